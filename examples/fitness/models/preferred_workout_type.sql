-- The workout type a member completes most (ties: more minutes, then the name), with its share of their
-- workouts. Only members with workouts have a row. (The seed also mentions saved workouts; the app sends no
-- such event yet.) Days filed under a profile merged since are followed to the surviving profile.
WITH per_type AS (
    SELECT
        coalesce(m.survivor_profile_id, d.profile_id) AS profile_id,
        d.workout_type,
        sum(d.workouts) AS workouts,
        sum(d.minutes) AS minutes
    FROM daily_workouts AS d
    LEFT JOIN profile_merges AS m ON m.merged_profile_id = d.profile_id
    WHERE d.workout_type <> 'unknown'
    GROUP BY 1, 2
),
ranked AS (
    SELECT
        profile_id,
        workout_type,
        workouts,
        sum(workouts) OVER (PARTITION BY profile_id) AS workouts_total,
        row_number() OVER (PARTITION BY profile_id ORDER BY workouts DESC, minutes DESC, workout_type) AS rank
    FROM per_type
)
SELECT
    profile_id,
    workout_type AS preferred_workout_type,
    workouts AS workouts_of_type,
    workouts_total,
    CAST(workouts AS DOUBLE) / workouts_total AS share
FROM ranked
WHERE rank = 1
