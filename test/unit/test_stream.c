/* Unit tests for sl_stream's plan: what an existing stream is compared
 * with, and which differences are applied in place (only settings given
 * explicitly and changeable by JetStream) or only reported. */
#include <string.h>

#include "sl_stream.h"
#include "unit.h"

static sl_stream_config config(unsigned given)
{
    sl_stream_config c = {"SLUICE", "sluice.rec.>", 3, 7LL * 86400000, -1, 120000, false, given};
    return c;
}

static const sl_stream_diff *find(const sl_stream_diff *d, int n, const char *setting)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(d[i].setting, setting) == 0)
            return &d[i];
    }
    return NULL;
}

static void test_same_stream_no_diffs(void)
{
    sl_stream_config c = config(0);
    const char *subjects[1];
    jsStreamConfig have, want;
    sl_stream_diff d[SL_STREAM_MAX_DIFFS];

    sl_stream_config_fill(&c, subjects, &have);
    CHECK(sl_stream_plan(&c, &have, &want, d) == 0);
    CHECK(want.Replicas == 3 && want.MaxAge == 7LL * 86400 * 1000000000LL);
    CHECK(want.Discard == js_DiscardOld && want.Duplicates == 120LL * 1000000000LL);
}

static void test_defaults_never_change_a_stream(void)
{
    sl_stream_config c = config(0);
    const char *subjects[1];
    jsStreamConfig have, want;
    sl_stream_diff d[SL_STREAM_MAX_DIFFS];
    int n;

    sl_stream_config_fill(&c, subjects, &have);
    have.Replicas = 5;
    have.MaxBytes = 1 << 30;
    n = sl_stream_plan(&c, &have, &want, d);
    CHECK(n == 2);
    CHECK(find(d, n, "replicas") && !find(d, n, "replicas")->update);
    CHECK(find(d, n, "replicas")->configured == 3 && find(d, n, "replicas")->existing == 5);
    CHECK(want.Replicas == 5 && want.MaxBytes == 1 << 30);
}

static void test_given_settings_are_applied(void)
{
    sl_stream_config c = config(SL_STREAM_GIVEN_REPLICAS | SL_STREAM_GIVEN_MAX_AGE |
                                SL_STREAM_GIVEN_DISCARD | SL_STREAM_GIVEN_DUPLICATES |
                                SL_STREAM_GIVEN_MAX_BYTES);
    const char *subjects[1];
    jsStreamConfig have, want;
    sl_stream_diff d[SL_STREAM_MAX_DIFFS];
    int n;

    c.discard_new = true;
    c.max_bytes = 1 << 20;
    sl_stream_config_fill(&c, subjects, &have);
    have.Replicas = 1;
    have.MaxAge = 0;
    have.Discard = js_DiscardOld;
    have.Duplicates = 1000000000LL;
    have.MaxBytes = -1;
    n = sl_stream_plan(&c, &have, &want, d);
    CHECK(n == 5);
    for (int i = 0; i < n; i++)
        CHECK(d[i].update);
    CHECK(want.Replicas == 3 && want.MaxAge == 7LL * 86400 * 1000000000LL);
    CHECK(want.Discard == js_DiscardNew && want.Duplicates == 120LL * 1000000000LL);
    CHECK(want.MaxBytes == 1 << 20);
    CHECK(find(d, n, "duplicate_window_ms")->existing == 1000);
}

static void test_unchangeable_only_reported(void)
{
    sl_stream_config c = config(SL_STREAM_GIVEN_REPLICAS);
    const char *subjects[1];
    jsStreamConfig have, want;
    sl_stream_diff d[SL_STREAM_MAX_DIFFS];
    int n;

    sl_stream_config_fill(&c, subjects, &have);
    have.Storage = js_MemoryStorage;
    have.Retention = js_InterestPolicy;
    n = sl_stream_plan(&c, &have, &want, d);
    CHECK(n == 2);
    CHECK(!d[0].update && !d[1].update);
    CHECK(want.Storage == js_MemoryStorage && want.Retention == js_InterestPolicy);
}

static void test_huge_durations_saturate(void)
{
    sl_stream_config c = config(0);
    const char *subjects[1];
    jsStreamConfig sc;

    c.max_age_ms = INT64_MAX / 2;
    sl_stream_config_fill(&c, subjects, &sc);
    CHECK(sc.MaxAge == INT64_MAX);
}

int main(void)
{
    TEST(test_same_stream_no_diffs);
    TEST(test_defaults_never_change_a_stream);
    TEST(test_given_settings_are_applied);
    TEST(test_unchangeable_only_reported);
    TEST(test_huge_durations_saturate);
    return UNIT_RESULT();
}
