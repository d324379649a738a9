-- How regularly a member trains: workout frequency (last 7 and 28 days), the current streak of consecutive
-- days, and session length, folded into a 0-100 score:
--   40 * min(workouts in 28 days, 12) / 12  +  30 * min(streak, 7) / 7  +  30 * min(average minutes, 45) / 45
-- Rows of daily_workouts were written under the profile of their day; merges since then are followed here.
WITH days AS (
    SELECT
        coalesce(m.survivor_profile_id, d.profile_id) AS profile_id,
        d.day,
        date_diff('day', d.day, current_date) AS days_ago,
        sum(d.workouts) AS workouts,
        sum(d.minutes) AS minutes
    FROM daily_workouts AS d
    LEFT JOIN profile_merges AS m ON m.merged_profile_id = d.profile_id
    WHERE d.day <= current_date
    GROUP BY 1, 2, 3
),
islands AS (
    -- consecutive days share (days_ago - rank): the first island holds the newest days
    SELECT profile_id, days_ago, days_ago - row_number() OVER (PARTITION BY profile_id ORDER BY days_ago) AS island
    FROM days
),
streaks AS (
    SELECT profile_id, count(*) AS current_streak_days
    FROM islands
    GROUP BY profile_id, island
    HAVING min(days_ago) <= 1
),
activity AS (
    SELECT
        profile_id,
        sum(CASE WHEN days_ago < 7 THEN workouts ELSE 0 END) AS workouts_7d,
        sum(CASE WHEN days_ago < 28 THEN workouts ELSE 0 END) AS workouts_28d,
        sum(CASE WHEN days_ago < 28 THEN 1 ELSE 0 END) AS active_days_28d,
        sum(CASE WHEN days_ago < 28 THEN minutes ELSE 0 END) AS minutes_28d
    FROM days
    GROUP BY profile_id
),
measures AS (
    SELECT
        pr.profile_id,
        coalesce(a.workouts_7d, 0) AS workouts_7d,
        coalesce(a.workouts_28d, 0) AS workouts_28d,
        coalesce(a.active_days_28d, 0) AS active_days_28d,
        coalesce(a.minutes_28d, 0) AS minutes_28d,
        CASE WHEN a.workouts_28d > 0 THEN a.minutes_28d / a.workouts_28d END AS avg_session_minutes_28d,
        coalesce(s.current_streak_days, 0) AS current_streak_days
    FROM profiles AS pr
    LEFT JOIN activity AS a ON a.profile_id = pr.profile_id
    LEFT JOIN streaks AS s ON s.profile_id = pr.profile_id
)
SELECT
    profile_id,
    workouts_7d,
    workouts_28d,
    active_days_28d,
    minutes_28d,
    avg_session_minutes_28d,
    current_streak_days,
    CAST(floor(
        40.0 * least(workouts_28d, 12) / 12
        + 30.0 * least(current_streak_days, 7) / 7
        + 30.0 * least(coalesce(avg_session_minutes_28d, 0), 45) / 45
    ) AS INTEGER) AS momentum_score
FROM measures
