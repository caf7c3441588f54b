#!/bin/bash
# The application, as the conversion test sees it: two sessions of hub_app over TLS that insert
# allocations, complete them and delete old seed rows (as the seed's archive function did), through
# prepared statements, until /var/tmp/inserter-TAG.stop appears. Each key it inserts or deletes
# is printed to /var/tmp/inserter-TAG-N.keys ("inserted KEY", "deleted KEY"), each error to
# /var/tmp/inserter-TAG-N.errors; its process id is in /var/tmp/inserter-TAG.pid.
#   inserter.sh TAG PGPASSFILE
set -u
tag="$1"
export PGPASSFILE="$2"
conninfo="host=127.0.0.1 dbname=hub user=hub_app sslmode=require"
rm -f "/var/tmp/inserter-$tag.stop"
echo $$ > "/var/tmp/inserter-$tag.pid"
for n in 1 2; do
  {
    echo "PREPARE ins AS INSERT INTO v1_hub_work_allocations (client_id, keyword, status)
          VALUES ('inserter', 'kw-$tag', 'allocated') RETURNING 'inserted ' || allocation_key;"
    echo "PREPARE fin AS UPDATE v1_hub_work_allocations
          SET status = 'completed', finished_at = now(), execution_time_ms = 7
          WHERE allocation_key = (SELECT allocation_key FROM v1_hub_work_allocations
                                  WHERE work_date = CURRENT_DATE AND status = 'allocated'
                                    AND client_id = 'inserter' LIMIT 1);"
    echo "PREPARE del AS DELETE FROM v1_hub_work_allocations
          WHERE allocation_key = (SELECT allocation_key FROM v1_hub_work_allocations
                                  WHERE work_date < CURRENT_DATE - 100 AND client_id LIKE 'client-%' LIMIT 1)
          RETURNING 'deleted ' || allocation_key;"
    while [ ! -e "/var/tmp/inserter-$tag.stop" ]; do
      echo "EXECUTE ins;"
      echo "EXECUTE fin;"
      echo "EXECUTE del;"
      sleep 0.01
    done
  } | psql -X -A -t -q "$conninfo" > "/var/tmp/inserter-$tag-$n.keys" 2> "/var/tmp/inserter-$tag-$n.errors" &
done
wait
