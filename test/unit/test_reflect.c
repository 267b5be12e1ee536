/* Unit tests for sl_reflect over the descriptor set the build embeds. */
#include <string.h>

#include "sl_reflect.h"
#include "unit.h"

static sl_reflect *ix;

static void test_files_and_symbols(void)
{
    int f = sl_reflect_file_by_symbol(ix, "sluice.v1.IngestService");
    CHECK(f >= 0);
    CHECK_STR(sl_reflect_file_name(ix, f), "sluice/v1/ingest.proto");
    CHECK(sl_reflect_file_by_symbol(ix, ".sluice.v1.Record") == f);
    CHECK(sl_reflect_file_by_symbol(ix, "sluice.v1.IngestService.IngestStream") == f);
    CHECK(sl_reflect_file_by_symbol(ix, "sluice.v1.Record.AttributesEntry") == f);
    CHECK(sl_reflect_file_by_symbol(ix, "sluice.v1.Nope") == -1);
    CHECK(sl_reflect_is_message(ix, "sluice.v1.Record"));
    CHECK(!sl_reflect_is_message(ix, "sluice.v1.IngestService"));
    f = sl_reflect_file_by_symbol(ix, "grpc.health.v1.HealthCheckResponse.ServingStatus");
    CHECK(f >= 0);
    CHECK_STR(sl_reflect_file_name(ix, f), "grpc/health/v1/health.proto");
}

static void test_closure(void)
{
    int out[16];
    bool ts = false, status = false, any = false;
    int f = sl_reflect_file_by_name(ix, "sluice/v1/ingest.proto");
    size_t n = sl_reflect_closure(ix, f, out, 16);
    CHECK(n == 4);
    CHECK(out[0] == f);
    for (size_t i = 1; i < n; i++) {
        const char *name = sl_reflect_file_name(ix, out[i]);
        ts |= strcmp(name, "google/protobuf/timestamp.proto") == 0;
        status |= strcmp(name, "google/rpc/status.proto") == 0;
        any |= strcmp(name, "google/protobuf/any.proto") == 0;
    }
    CHECK(ts && status && any);
}

static void test_services(void)
{
    const char *const *names;
    size_t n = sl_reflect_services(ix, &names);
    bool ingest = false, health = false;
    for (size_t i = 0; i < n; i++) {
        ingest |= strcmp(names[i], "sluice.v1.IngestService") == 0;
        health |= strcmp(names[i], "grpc.health.v1.Health") == 0;
    }
    CHECK(ingest && health);
}

static void test_garbage(void)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    CHECK(sl_reflect_new(junk, sizeof(junk)) == NULL);
}

int main(void)
{
    ix = sl_reflect_new(sl_descriptor_set, sl_descriptor_set_len);
    if (ix == NULL) {
        fprintf(stderr, "cannot index the embedded descriptor set\n");
        return 1;
    }
    TEST(test_files_and_symbols);
    TEST(test_closure);
    TEST(test_services);
    TEST(test_garbage);
    sl_reflect_free(ix);
    return UNIT_RESULT();
}
