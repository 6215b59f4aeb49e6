{{ config(
    materialized = 'view',
    tags = ['finance'],
    description = 'Open invoices past their due date, as of the moment it is read.',
) }}
-- A view: nothing is stored but this definition, so it is always current (and has
-- no history of its own: travel in time on the tables it reads instead).
SELECT
    id            AS invoice_id,
    customer_id,
    total,
    due_date
FROM {{ source('invoicing', 'invoices') }}
WHERE status = 'open' AND due_date < current_date
