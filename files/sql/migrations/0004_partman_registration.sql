-- 0004: register the four live tables with pg_partman: monthly partitions, a default
-- partition, partitions made from the month of (today - 120 days) to 4 months ahead.
-- No partman retention: our archive job moves old months (detach/attach), partman never
-- drops them.
--
-- pg_partman is 4.7 on Debian 12 (PostgreSQL 15) and 5.2 on Debian 13 (PostgreSQL 17); their
-- create_parent() differ, so the call is chosen by the installed version:
--   4.x: p_type => 'native', p_interval => 'monthly'; the default partition is always made.
--   5.x: p_type => 'range' (there is no 'native'), p_interval => '1 month' ('monthly' is
--        rejected), p_default_table => true.
-- Both: p_start_partition sets the first month (otherwise now - premake intervals), and
-- create_parent() makes the template table partman.template_public_<table> (owned by
-- hub_owner; this needs CREATE on schema partman).
--
-- After create_parent(), two settings in partman.part_config differ in default between the
-- versions or do not fit the hub, and are set the same on both:
--   infinite_time_partitions = true: premake counts from now, not from the newest row, so a
--     quiet table (proxy toggles) still gets its future partitions.
--   ignore_default_data = true (4.x defaults to false): a stray row far in the future in
--     the default partition must not make maintenance create hundreds of partitions up to it.
--     Rows in the default partitions are found by partman.check_default() and reported.

DO $$
DECLARE
    v_version text;
    v_schema  name;
    v_major   int;
    v_start   text := to_char(date_trunc('month', CURRENT_DATE - 120), 'YYYY-MM-DD');
    v_premake constant int := 4;
    v_table   record;
BEGIN
    SELECT e.extversion, n.nspname INTO v_version, v_schema
    FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';

    IF v_version IS NULL THEN
        RAISE EXCEPTION 'pg_partman is not installed in this database'
            USING HINT = 'As a superuser: CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;';
    END IF;
    IF v_schema <> 'partman' THEN
        RAISE EXCEPTION 'pg_partman is installed in schema %, expected partman', v_schema;
    END IF;
    v_major := split_part(v_version, '.', 1)::int;

    FOR v_table IN
        SELECT * FROM (VALUES
            ('public.v1_hub_work_allocations',     'work_date'),
            ('public.v1_hub_client_activity_logs', 'log_date'),
            ('public.v1_hub_proxy_toggle_logs',    'log_date'),
            ('public.v1_hub_work_slots_history',   'work_date')
        ) AS t (parent, control)
    LOOP
        IF v_major = 4 THEN
            PERFORM partman.create_parent(
                p_parent_table    => v_table.parent,
                p_control         => v_table.control,
                p_type            => 'native',
                p_interval        => 'monthly',
                p_premake         => v_premake,
                p_start_partition => v_start,
                p_jobmon          => false);
        ELSIF v_major = 5 THEN
            PERFORM partman.create_parent(
                p_parent_table    => v_table.parent,
                p_control         => v_table.control,
                p_type            => 'range',
                p_interval        => '1 month',
                p_premake         => v_premake,
                p_start_partition => v_start,
                p_default_table   => true,
                p_jobmon          => false);
        ELSE
            RAISE EXCEPTION 'pg_partman % is not supported (expected 4.7.x or 5.x)', v_version;
        END IF;

        UPDATE partman.part_config
        SET infinite_time_partitions = true,
            ignore_default_data = true,
            retention = NULL,
            automatic_maintenance = 'on'
        WHERE parent_table = v_table.parent;
    END LOOP;
END
$$;

-- Check what was made, independently of the partman version: every day from today - 120 to
-- today + 80 (the live window) falls in a monthly partition, and each table has a default
-- partition.
DO $$
DECLARE
    v_parent regclass;
    v_gaps   int;
BEGIN
    FOREACH v_parent IN ARRAY ARRAY[
        'public.v1_hub_work_allocations', 'public.v1_hub_client_activity_logs',
        'public.v1_hub_proxy_toggle_logs', 'public.v1_hub_work_slots_history']::regclass[]
    LOOP
        IF NOT EXISTS (
            SELECT FROM pg_catalog.pg_inherits i
            JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = v_parent AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
        ) THEN
            RAISE EXCEPTION '% has no default partition', v_parent;
        END IF;

        SELECT count(*) INTO v_gaps
        FROM generate_series(CURRENT_DATE - 120, CURRENT_DATE + 80, interval '1 day') AS d (day)
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_inherits i
            JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            CROSS JOIN LATERAL regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                            $re$FROM \('([0-9-]+)'\) TO \('([0-9-]+)'\)$re$) AS b (bound)
            WHERE i.inhparent = v_parent
              AND d.day >= b.bound[1]::date AND d.day < b.bound[2]::date
        );
        IF v_gaps > 0 THEN
            RAISE EXCEPTION '% lacks a partition for % day(s) between today - 120 and today + 80', v_parent, v_gaps;
        END IF;
    END LOOP;
END
$$;
