/* sl_grpc_codes: the gRPC status codes by name, for code that must not
 * depend on grpc.h (the pure record logic and its tests). Values are fixed by
 * the gRPC protocol and equal grpc_status_code's. */
#ifndef SL_GRPC_CODES_H
#define SL_GRPC_CODES_H

enum {
    SL_GRPC_OK = 0,
    SL_GRPC_CANCELLED = 1,
    SL_GRPC_UNKNOWN = 2,
    SL_GRPC_INVALID_ARGUMENT = 3,
    SL_GRPC_DEADLINE_EXCEEDED = 4,
    SL_GRPC_NOT_FOUND = 5,
    SL_GRPC_ALREADY_EXISTS = 6,
    SL_GRPC_PERMISSION_DENIED = 7,
    SL_GRPC_RESOURCE_EXHAUSTED = 8,
    SL_GRPC_FAILED_PRECONDITION = 9,
    SL_GRPC_ABORTED = 10,
    SL_GRPC_OUT_OF_RANGE = 11,
    SL_GRPC_UNIMPLEMENTED = 12,
    SL_GRPC_INTERNAL = 13,
    SL_GRPC_UNAVAILABLE = 14,
    SL_GRPC_DATA_LOSS = 15,
    SL_GRPC_UNAUTHENTICATED = 16,
};

/* "INVALID_ARGUMENT" for 3, and so on; "UNKNOWN" outside the range. */
const char *sl_grpc_code_name(int code);

#endif
