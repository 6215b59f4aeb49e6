{{ config(
    materialized = 'incremental',
    unique_key = 'customer_id',
    tags = ['customers'],
) }}
-- One row per customer: what they were billed and paid, over every invoice that
-- is not a draft. Incremental: a build recomputes only the customers whose
-- invoices or details changed since the last build (deletes included).
SELECT
    c.id                                  AS customer_id,
    c.name                                AS name,
    c.country                             AS country,
    count(i.id)                           AS invoices,
    coalesce(sum(i.total), 0)             AS billed,
    coalesce(sum(CASE WHEN i.status = 'paid' THEN i.total END), 0) AS paid,
    max(i.issued_at)                      AS last_invoiced_at
FROM {{ source('invoicing', 'customers') }} c
LEFT JOIN {{ source('invoicing', 'invoices') }} i
       ON i.customer_id = c.id AND i.status <> 'draft'
GROUP BY c.id, c.name, c.country
