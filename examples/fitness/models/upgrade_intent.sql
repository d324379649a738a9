-- Signals of wanting a paid plan: pricing views, plan comparisons and checkout attempts (abandoned or completed),
-- counted over the last 30 days, and whether the member already subscribed. The score weighs a checkout
-- attempt three times a pricing view, a comparison twice.
WITH signals AS (
    SELECT p.profile_id, 'pricing' AS signal, v."timestamp" AS at
    FROM pricing_viewed AS v JOIN event_profiles AS p ON p.source = v.source AND p.message_id = v.message_id
    UNION ALL
    SELECT p.profile_id, 'comparison', v."timestamp"
    FROM plan_comparison_viewed AS v JOIN event_profiles AS p ON p.source = v.source AND p.message_id = v.message_id
    UNION ALL
    SELECT p.profile_id, 'checkout', v."timestamp"
    FROM checkout_abandoned AS v JOIN event_profiles AS p ON p.source = v.source AND p.message_id = v.message_id
    UNION ALL
    SELECT p.profile_id, 'subscription', v."timestamp"
    FROM subscription_started AS v JOIN event_profiles AS p ON p.source = v.source AND p.message_id = v.message_id
),
counts AS (
    SELECT
        profile_id,
        sum(CASE WHEN signal = 'pricing' THEN 1 ELSE 0 END) AS pricing_views_total,
        sum(CASE WHEN signal = 'pricing' AND at > now() - INTERVAL 30 DAY THEN 1 ELSE 0 END) AS pricing_views_30d,
        sum(CASE WHEN signal = 'comparison' AND at > now() - INTERVAL 30 DAY THEN 1 ELSE 0 END)
            AS plan_comparisons_30d,
        sum(CASE WHEN signal IN ('checkout', 'subscription') AND at > now() - INTERVAL 30 DAY THEN 1 ELSE 0 END)
            AS checkout_attempts_30d,
        sum(CASE WHEN signal = 'subscription' THEN 1 ELSE 0 END) AS subscriptions
    FROM signals
    GROUP BY profile_id
),
scored AS (
    SELECT
        pr.profile_id,
        coalesce(c.pricing_views_total, 0) AS pricing_views_total,
        coalesce(c.pricing_views_30d, 0) AS pricing_views_30d,
        coalesce(c.plan_comparisons_30d, 0) AS plan_comparisons_30d,
        coalesce(c.checkout_attempts_30d, 0) AS checkout_attempts_30d,
        coalesce(c.subscriptions, 0) > 0 AS subscribed
    FROM profiles AS pr
    LEFT JOIN counts AS c ON c.profile_id = pr.profile_id
)
SELECT
    profile_id,
    pricing_views_total,
    pricing_views_30d,
    plan_comparisons_30d,
    checkout_attempts_30d,
    subscribed,
    pricing_views_30d + 2 * plan_comparisons_30d + 3 * checkout_attempts_30d AS intent_score,
    CASE
        WHEN checkout_attempts_30d > 0 OR pricing_views_30d + 2 * plan_comparisons_30d >= 6 THEN 'high'
        WHEN pricing_views_30d + 2 * plan_comparisons_30d >= 2 THEN 'medium'
        WHEN pricing_views_30d > 0 THEN 'low'
        ELSE 'none'
    END AS intent_level
FROM scored
