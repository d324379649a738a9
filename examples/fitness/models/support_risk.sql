-- How much a member's support history puts them at risk: tickets and their reasons, open tickets, resolution
-- times and satisfaction. A ticket is open until a ticket_resolved with its ticket_id arrives (from the same
-- member: help-desk ticket ids are not unique across members).
--   high    a ticket open for over 48 hours, a CSAT of 2 or less, or a cancellation ticket in the last 90 days
--   medium  an open ticket, an average resolution over 24 hours, or a billing ticket in the last 90 days
--   low     other tickets in the last 90 days
--   none    no ticket in the last 90 days
WITH tickets AS (
    SELECT p.profile_id, t.ticket_id, t.ticket_reason, t."timestamp" AS created_at
    FROM ticket_created AS t JOIN event_profiles AS p ON p.source = t.source AND p.message_id = t.message_id
),
resolutions AS (
    SELECT p.profile_id, r.ticket_id, max(r.resolution_time) AS resolution_hours
    FROM ticket_resolved AS r JOIN event_profiles AS p ON p.source = r.source AND p.message_id = r.message_id
    GROUP BY p.profile_id, r.ticket_id
),
scores AS (
    SELECT p.profile_id, c.ticket_id, min(c.csat_score) AS csat_score
    FROM csat_submitted AS c JOIN event_profiles AS p ON p.source = c.source AND p.message_id = c.message_id
    GROUP BY p.profile_id, c.ticket_id
),
per_member AS (
    SELECT
        t.profile_id,
        count(*) AS tickets_total,
        sum(CASE WHEN t.created_at > now() - INTERVAL 90 DAY THEN 1 ELSE 0 END) AS tickets_90d,
        sum(CASE WHEN r.ticket_id IS NULL THEN 1 ELSE 0 END) AS open_tickets,
        sum(CASE WHEN r.ticket_id IS NULL AND t.created_at < now() - INTERVAL 48 HOUR THEN 1 ELSE 0 END)
            AS tickets_open_over_48h,
        sum(CASE WHEN t.ticket_reason = 'cancellation' AND t.created_at > now() - INTERVAL 90 DAY THEN 1 ELSE 0 END)
            AS cancellation_tickets_90d,
        sum(CASE WHEN t.ticket_reason = 'billing' AND t.created_at > now() - INTERVAL 90 DAY THEN 1 ELSE 0 END)
            AS billing_tickets_90d,
        avg(r.resolution_hours) AS avg_resolution_hours,
        min(s.csat_score) AS lowest_csat
    FROM tickets AS t
    LEFT JOIN resolutions AS r ON r.profile_id = t.profile_id AND r.ticket_id = t.ticket_id
    LEFT JOIN scores AS s ON s.profile_id = t.profile_id AND s.ticket_id = t.ticket_id
    GROUP BY t.profile_id
)
SELECT
    pr.profile_id,
    coalesce(m.tickets_total, 0) AS tickets_total,
    coalesce(m.tickets_90d, 0) AS tickets_90d,
    coalesce(m.open_tickets, 0) AS open_tickets,
    coalesce(m.billing_tickets_90d, 0) AS billing_tickets_90d,
    coalesce(m.cancellation_tickets_90d, 0) AS cancellation_tickets_90d,
    m.avg_resolution_hours,
    m.lowest_csat,
    CASE
        WHEN m.tickets_open_over_48h > 0 OR m.lowest_csat <= 2 OR m.cancellation_tickets_90d > 0 THEN 'high'
        WHEN m.open_tickets > 0 OR m.avg_resolution_hours > 24 OR m.billing_tickets_90d > 0 THEN 'medium'
        WHEN m.tickets_90d > 0 THEN 'low'
        ELSE 'none'
    END AS risk_level
FROM profiles AS pr
LEFT JOIN per_member AS m ON m.profile_id = pr.profile_id
