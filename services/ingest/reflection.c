/* reflection: see reflection.h.
 *
 * A reflection call is a bidirectional stream in lockstep: read a request,
 * send its answer, read the next. Answers come from the sl_reflect index
 * built at start, so a call never blocks. */
#include "reflection.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "sl_grpc_call.h"
#include "sl_grpc_codes.h"
#include "sl_pb_check.h"

#define MAX_CLOSURE 64

typedef Grpc__Reflection__V1__ServerReflectionRequest request;
typedef Grpc__Reflection__V1__ServerReflectionResponse response;

struct reflection_service {
    const sl_reflect *index;
    sl_auth *auth;
};

typedef struct reflection_call {
    sl_call base;
    reflection_service *svc;
} reflection_call;

static void answer_files(const sl_reflect *ix, int file, response *resp,
                         Grpc__Reflection__V1__FileDescriptorResponse *fdr,
                         ProtobufCBinaryData *blobs)
{
    int closure[MAX_CLOSURE];
    size_t n = sl_reflect_closure(ix, file, closure, MAX_CLOSURE);
    for (size_t i = 0; i < n; i++)
        blobs[i].data = (uint8_t *)sl_reflect_file_bytes(ix, closure[i], &blobs[i].len);
    fdr->n_file_descriptor_proto = n;
    fdr->file_descriptor_proto = blobs;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = fdr;
}

static void answer_error(response *resp, Grpc__Reflection__V1__ErrorResponse *err,
                         const char *message)
{
    err->error_code = SL_GRPC_NOT_FOUND;
    err->error_message = (char *)message;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = err;
}

/* Builds and packs the answer to req. */
static uint8_t *answer(const sl_reflect *ix, request *req, size_t *len)
{
    response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse fdr =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse err = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse list = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse ext =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse svcs[16], *svcp[16];
    ProtobufCBinaryData blobs[MAX_CLOSURE];
    const char *const *names;
    uint8_t *buf;
    int file;

    resp.valid_host = req->host;
    resp.original_request = req;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        list.n_service = sl_reflect_services(ix, &names);
        if (list.n_service > 16)
            list.n_service = 16;
        for (size_t i = 0; i < list.n_service; i++) {
            grpc__reflection__v1__service_response__init(&svcs[i]);
            svcs[i].name = (char *)names[i];
            svcp[i] = &svcs[i];
        }
        list.service = svcp;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &list;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = sl_reflect_file_by_name(ix, req->file_by_filename);
        if (file < 0)
            answer_error(&resp, &err, "file not found");
        else
            answer_files(ix, file, &resp, &fdr, blobs);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = sl_reflect_file_by_symbol(ix, req->file_containing_symbol);
        if (file < 0)
            answer_error(&resp, &err, "symbol not found");
        else
            answer_files(ix, file, &resp, &fdr, blobs);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        if (!sl_reflect_is_message(ix, req->all_extension_numbers_of_type)) {
            answer_error(&resp, &err, "type not found");
            break;
        }
        ext.base_type_name = req->all_extension_numbers_of_type; /* Sluice declares none */
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
        resp.all_extension_numbers_response = &ext;
        break;
    default:
        answer_error(&resp, &err, "extension not found");
        break;
    }
    *len = grpc__reflection__v1__server_reflection_response__get_packed_size(&resp);
    buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        grpc__reflection__v1__server_reflection_response__pack(&resp, buf);
    return buf;
}

int reflection_answer(const sl_reflect *index, const uint8_t *data, size_t len, uint8_t **out,
                      size_t *outlen, const char **why)
{
    request *req = NULL;

    /* protobuf-c also reads bytes that are no proto3 message (a field
     * number 0 in a long tag, strings that are not UTF-8), and the request
     * is echoed in the response, which clients must be able to read. */
    if (sl_pb_check(&grpc__reflection__v1__server_reflection_request__descriptor, data, len, NULL,
                    0) == SL_PB_OK)
        req = grpc__reflection__v1__server_reflection_request__unpack(NULL, len, data);
    if (req == NULL) {
        *why = "request: not a ServerReflectionRequest";
        return SL_GRPC_INVALID_ARGUMENT;
    }
    *outlen = 0;
    *out = answer(index, req, outlen);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    if (*out == NULL) {
        *why = "out of memory";
        return SL_GRPC_RESOURCE_EXHAUSTED;
    }
    return 0;
}

static void reflection_recv(sl_call *b, const uint8_t *data, size_t len)
{
    reflection_call *c = (reflection_call *)b;
    const char *why = NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    int code;

    if (data == NULL) {
        sl_call_status_locked(b, SL_GRPC_OK, "");
        return;
    }
    code = reflection_answer(c->svc->index, data, len, &buf, &n, &why);
    if (code != 0)
        sl_call_status_locked(b, code, why);
    else
        sl_call_send_locked(b, buf, n, false, 0, NULL);
}

/* The answer is out: read the next request. */
static void reflection_sent(sl_call *b)
{
    if (!b->status_sent)
        sl_call_recv_locked(b);
}

static void reflection_destroy(sl_call *b)
{
    free(b);
}

static const sl_call_ops reflection_ops = {
    .recv = reflection_recv, .sent = reflection_sent, .destroy = reflection_destroy};

static void handle_info(void *svc, const sl_rpc_start *start)
{
    reflection_service *r = svc;
    char who[SL_PRINCIPAL_MAX], why[512];
    reflection_call *c;
    int code = sl_auth_authenticate(r->auth, start->call, start->metadata, who, why, sizeof(why));

    if (code != 0) {
        sl_grpc_reply_status(start, (grpc_status_code)code, why);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sl_grpc_reply_status(start, GRPC_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory");
        return;
    }
    c->svc = svc;
    sl_call_start(&c->base, &reflection_ops, start);
}

reflection_service *reflection_service_new(sl_grpc_server *srv, const sl_reflect *index,
                                           sl_auth *auth)
{
    reflection_service *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->index = index;
    r->auth = auth;
    sl_grpc_server_route(srv, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                         handle_info, r);
    sl_grpc_server_route(srv, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                         handle_info, r);
    return r;
}

void reflection_service_free(reflection_service *r)
{
    free(r);
}
