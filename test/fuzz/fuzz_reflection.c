/* fuzz_reflection: one message of a gRPC reflection call, as sluice-ingest
 * answers it (reflection_answer: unpack the ServerReflectionRequest, look
 * the name up in the index of the embedded descriptor set, pack the
 * response).
 *
 * Oracles: bytes that are a proto3 message (sl_pb_check: well formed,
 * strings in UTF-8 without NUL) and that protobuf-c reads as a request get
 * an answer, others INVALID_ARGUMENT; the answer is a
 * ServerReflectionResponse that echoes the request and answers its kind
 * (files with the requested one first, an error, a list, extension
 * numbers), and is a proto3 message too, which strict clients (grpcurl,
 * Go) need to read it at all. */
#include "fuzz.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "reflection.h"
#include "sl_grpc_codes.h"
#include "sl_pb_check.h"

#define REQUEST (&grpc__reflection__v1__server_reflection_request__descriptor)
#define RESPONSE (&grpc__reflection__v1__server_reflection_response__descriptor)

typedef Grpc__Reflection__V1__ServerReflectionRequest request;
typedef Grpc__Reflection__V1__ServerReflectionResponse response;

static sl_reflect *ix;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ix = sl_reflect_new(sl_descriptor_set, sl_descriptor_set_len);
    FUZZ_CHECK(ix != NULL);
    return 0;
}

static void answer_check(const request *req, const response *resp)
{
    const char *name;
    int file;

    FUZZ_CHECK(resp->original_request != NULL);
    FUZZ_CHECK(resp->original_request->message_request_case == req->message_request_case);
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        FUZZ_CHECK(
            resp->message_response_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
        return;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = sl_reflect_file_by_name(ix, req->file_by_filename);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = sl_reflect_file_by_symbol(ix, req->file_containing_symbol);
        break;
    default:
        return;
    }
    if (file < 0) {
        FUZZ_CHECK(
            resp->message_response_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
        FUZZ_CHECK(resp->error_response->error_code == SL_GRPC_NOT_FOUND);
        return;
    }
    FUZZ_CHECK(
        resp->message_response_case ==
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    FUZZ_CHECK(resp->file_descriptor_response->n_file_descriptor_proto >= 1);
    name = sl_reflect_file_name(ix, file);
    /* the first file is the one asked for: its name is its field 1 */
    FUZZ_CHECK(resp->file_descriptor_response->file_descriptor_proto[0].len > strlen(name) + 2);
    FUZZ_CHECK(memcmp(resp->file_descriptor_response->file_descriptor_proto[0].data + 2, name,
                      strlen(name)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request *req = grpc__reflection__v1__server_reflection_request__unpack(NULL, size, data);
    uint8_t *out = NULL;
    size_t n = 0;
    const char *why = NULL;
    int code = reflection_answer(ix, data, size, &out, &n, &why);
    response *resp;

    if (req == NULL || sl_pb_check(REQUEST, data, size, NULL, 0) != SL_PB_OK) {
        FUZZ_CHECK(code == SL_GRPC_INVALID_ARGUMENT && why != NULL && out == NULL);
        grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
        return 0;
    }
    FUZZ_CHECK(code == 0 && out != NULL);
    resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, n, out);
    FUZZ_CHECK(resp != NULL);
    answer_check(req, resp);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    FUZZ_CHECK(sl_pb_check(RESPONSE, out, n, NULL, 0) == SL_PB_OK);
    free(out);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return 0;
}
