-- Where a member is in their training life, first match wins:
--   new        no workout yet
--   at_risk    no workout in the last 7 days
--   retained   first workout 28 or more days ago, and still training
--   committed  6 or more workouts in the last 14 days
--   activated  training, but not (yet) committed
WITH days AS (
    SELECT
        coalesce(m.survivor_profile_id, d.profile_id) AS profile_id,
        date_diff('day', d.day, current_date) AS days_ago,
        d.workouts
    FROM daily_workouts AS d
    LEFT JOIN profile_merges AS m ON m.merged_profile_id = d.profile_id
    WHERE d.day <= current_date
),
summary AS (
    SELECT
        profile_id,
        sum(workouts) AS workouts_total,
        sum(CASE WHEN days_ago < 14 THEN workouts ELSE 0 END) AS workouts_14d,
        min(days_ago) AS days_since_last_workout,
        max(days_ago) AS days_since_first_workout
    FROM days
    GROUP BY profile_id
)
SELECT
    pr.profile_id,
    CASE
        WHEN s.workouts_total IS NULL THEN 'new'
        WHEN s.days_since_last_workout >= 7 THEN 'at_risk'
        WHEN s.days_since_first_workout >= 28 THEN 'retained'
        WHEN s.workouts_14d >= 6 THEN 'committed'
        ELSE 'activated'
    END AS state,
    coalesce(s.workouts_total, 0) AS workouts_total,
    coalesce(s.workouts_14d, 0) AS workouts_14d,
    s.days_since_last_workout,
    s.days_since_first_workout
FROM profiles AS pr
LEFT JOIN summary AS s ON s.profile_id = pr.profile_id
