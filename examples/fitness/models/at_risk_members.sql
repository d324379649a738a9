-- Members who trained before but not in the last 7 days, and whose support history does not call for a human
-- first: the win-back journey's audience.
SELECT a.profile_id
FROM activation_state AS a
JOIN support_risk AS s ON s.profile_id = a.profile_id
WHERE a.state = 'at_risk'
  AND s.risk_level <> 'high'
