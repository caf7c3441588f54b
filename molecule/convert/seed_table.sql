-- The seed's v1_hub_work_allocations as an application of the seed era made it: a plain table
-- with its own column order and types, the seed's two indexes, owned by the application's role.
CREATE TABLE IF NOT EXISTS public.v1_hub_work_allocations (
    allocation_key    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id         varchar(64) NOT NULL,
    keyword           varchar(255) NOT NULL,
    proxy_id          integer,
    status            varchar(20) NOT NULL DEFAULT 'allocated',
    allocated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    execution_time_ms integer,
    work_date         date NOT NULL DEFAULT CURRENT_DATE
);
CREATE INDEX IF NOT EXISTS idx_allocations_recent ON public.v1_hub_work_allocations (work_date, status);
CREATE INDEX IF NOT EXISTS idx_allocations_lookup ON public.v1_hub_work_allocations (allocation_key, work_date)
    WHERE status = 'allocated';
ALTER TABLE public.v1_hub_work_allocations OWNER TO hub_seed;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.v1_hub_work_allocations TO hub_app;
INSERT INTO public.v1_hub_work_allocations
    (client_id, keyword, proxy_id, status, allocated_at, finished_at, execution_time_ms, work_date)
SELECT 'client-' || (i % 40), 'keyword-' || (i % 30000), 1 + i % 500,
       CASE WHEN d.day = CURRENT_DATE AND i % 3 = 0 THEN 'allocated'
            WHEN i % 10 = 0 THEN 'expired' ELSE 'completed' END,
       d.day + make_interval(secs => i % 86400),
       CASE WHEN d.day = CURRENT_DATE AND i % 3 = 0 THEN NULL
            ELSE d.day + make_interval(secs => i % 86400 + 30) END,
       CASE WHEN i % 10 = 0 OR (d.day = CURRENT_DATE AND i % 3 = 0) THEN NULL ELSE 100 + i % 5000 END,
       d.day
FROM generate_series(1, 200000) AS i
CROSS JOIN LATERAL (SELECT (CURRENT_DATE - (i % 182))::date AS day) AS d
WHERE NOT EXISTS (SELECT FROM public.v1_hub_work_allocations);
