-- One row per member, UTC day and workout type with at least one workout: the incremental base that
-- momentum_score, activation_state and preferred_workout_type roll up. A day's rows depend only on that day's
-- workouts, so a build rebuilds only the days from the newest one minus the lookback.
SELECT
    p.profile_id,
    CAST(date_trunc('day', w."timestamp") AS DATE) AS day,
    coalesce(w.workout_type, 'unknown') AS workout_type,
    count(*) AS workouts,
    sum(w.duration_minutes) AS minutes
FROM workout_completed AS w
JOIN event_profiles AS p ON p.source = w.source AND p.message_id = w.message_id
GROUP BY p.profile_id, CAST(date_trunc('day', w."timestamp") AS DATE), coalesce(w.workout_type, 'unknown')
