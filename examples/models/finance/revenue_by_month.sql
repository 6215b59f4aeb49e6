{{ config(
    materialized = 'table',
    unique_key = 'month',
    tags = ['finance'],
    description = 'Invoiced revenue by month of issue (open and paid invoices).',
) }}
SELECT
    date_trunc('month', issued_at)    AS month,
    count(*)                          AS invoices,
    sum(total)                        AS revenue,
    sum(CASE WHEN status = 'paid' THEN total ELSE 0 END) AS collected
FROM {{ source('invoicing', 'invoices') }}
WHERE status IN ('open', 'paid')
GROUP BY 1
