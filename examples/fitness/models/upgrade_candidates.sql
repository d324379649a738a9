-- The upgrade nudge's audience (seed 000's eligibility prompt): members who completed at least 3 workouts,
-- viewed pricing, have no open support ticket, and are not subscribed yet.
SELECT a.profile_id
FROM activation_state AS a
JOIN upgrade_intent AS u ON u.profile_id = a.profile_id
JOIN support_risk AS s ON s.profile_id = a.profile_id
WHERE a.workouts_total >= 3
  AND u.pricing_views_total > 0
  AND s.open_tickets = 0
  AND NOT u.subscribed
