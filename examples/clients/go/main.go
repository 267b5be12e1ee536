// Command ingest-client is a Sluice client example: it ingests N records,
// retrying each with the SAME id.
//
// Record.Id is the idempotency key: a retry after UNAVAILABLE (the record may
// or may not be stored) is stored once, and the answer then says
// duplicate=true with the original sequence. The stubs in gen/ come from
// proto/ through buf generate (run.sh).
//
// Security, from the environment or flags: SLUICE_CA (-ca) turns TLS on and
// verifies the server with that CA (-tls: with the system's roots instead);
// SLUICE_CERT / SLUICE_KEY (-cert / -key) present a client certificate
// (mTLS); SLUICE_TOKEN (-token) goes as "authorization: Bearer <token>" on
// every call, as per-call credentials that require TLS.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sluicev1 "sluice.example/client/gen/sluice/v1"
)

// retryable: UNAVAILABLE is JetStream not reachable or no PubAck in time;
// RESOURCE_EXHAUSTED is too many records in flight, so back off.
// INVALID_ARGUMENT and the rest are final.
func retryable(c codes.Code) bool {
	return c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.ResourceExhausted
}

// codeName is the canonical name of a status code (UNAVAILABLE), as the
// other clients and grpcurl print it.
func codeName(c codes.Code) string { return rpccode.Code(c).String() }

// finalHint says why a code is final, for the two that are about the caller:
// the same call with the same credentials gets the same answer.
func finalHint(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return " (not retried: the server did not accept this caller's credentials: " +
			"check SLUICE_TOKEN, or SLUICE_CERT and SLUICE_KEY)"
	case codes.PermissionDenied:
		return " (not retried: the server's policy does not let this caller write records of this type)"
	}
	return ""
}

// bearer is per-call credentials: "authorization: Bearer <token>" on every
// call, and never over a connection without TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

type security struct {
	ca, cert, key, token string
	tls                  bool
}

// dialOptions: plaintext, or TLS verified with the CA file (or the system's
// roots) with a client certificate when given, and the token on every call.
func (s security) dialOptions() ([]grpc.DialOption, error) {
	if (s.cert == "") != (s.key == "") {
		return nil, errors.New("-cert (SLUICE_CERT) and -key (SLUICE_KEY) go together")
	}
	if !s.tls && s.ca == "" && s.cert == "" {
		if s.token != "" {
			return nil, errors.New("a token is sent only over TLS: set SLUICE_CA (-ca) to the CA " +
				"of the server's certificate, or -tls for the system roots")
		}
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // RootCAs nil: the system's roots
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca: %s: no PEM certificate in it", s.ca)
		}
	}
	if s.cert != "" {
		pair, err := tls.LoadX509KeyPair(s.cert, s.key)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if s.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(s.token)))
	}
	return opts, nil
}

type options struct {
	timeout, backoff, maxBackoff time.Duration
	attempts                     int
}

// hintJitter: a pause the server asks for (RetryInfo) is stretched by up to
// this much, at random, so that the callers it turned away do not all come
// back at once.
const hintJitter = 0.2

// retryDelay is the pause the server asked for: the google.rpc.RetryInfo in
// the status details, which grpc-go decodes from the trailing metadata entry
// grpc-status-details-bin. ok is false when there is no (positive) one.
func retryDelay(st *status.Status) (delay time.Duration, ok bool) {
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.RetryInfo); isInfo && info.GetRetryDelay() != nil {
			delay = info.GetRetryDelay().AsDuration()
			return delay, delay > 0
		}
	}
	return 0, false
}

// ingest makes one Ingest call per attempt, each under its own deadline.
// Between attempts it waits the pause the server asked for (RetryInfo) plus a
// little jitter, never less; without one, exponential backoff with jitter.
// The record, id included, never changes.
func ingest(client sluicev1.IngestServiceClient, rec *sluicev1.Record, o options) (*sluicev1.IngestResponse, error) {
	backoff := o.backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		resp, err := client.Ingest(ctx, &sluicev1.IngestRequest{Record: rec})
		cancel()
		st, _ := status.FromError(err)
		if err == nil || !retryable(st.Code()) || attempt >= o.attempts {
			return resp, err
		}
		pause, hint := time.Duration(float64(backoff)*(0.5+rand.Float64()/2)), ""
		if asked, ok := retryDelay(st); ok {
			pause = asked + time.Duration(float64(asked)*hintJitter*rand.Float64())
			hint = fmt.Sprintf(" (server asked %.3fs)", asked.Seconds())
		}
		fmt.Fprintf(os.Stderr, "retry id=%s attempt=%d code=%s wait=%.3fs%s: %s\n",
			rec.Id, attempt, codeName(st.Code()), pause.Seconds(), hint, st.Message())
		time.Sleep(pause)
		backoff = min(backoff*2, o.maxBackoff)
	}
}

func show(r *sluicev1.IngestResponse) {
	fmt.Printf("id=%s stream=%s sequence=%d duplicate=%t\n", r.Id, r.Stream, r.Sequence, r.Duplicate)
}

func main() {
	addr := os.Getenv("SLUICE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	flag.StringVar(&addr, "addr", addr, "Sluice ingest address (env SLUICE_ADDR)")
	count := flag.Int("count", 3, "records to ingest")
	prefix := flag.String("prefix", "order", "ids are <prefix>-<i>")
	typ := flag.String("type", "order.created", "record type")
	var o options
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline per call")
	flag.IntVar(&o.attempts, "attempts", 10, "tries per record")
	flag.DurationVar(&o.backoff, "backoff", 200*time.Millisecond, "first backoff")
	flag.DurationVar(&o.maxBackoff, "max-backoff", 3*time.Second, "largest backoff")
	var sec security
	flag.StringVar(&sec.ca, "ca", os.Getenv("SLUICE_CA"),
		"PEM of the CA that signed the server's certificate: TLS (env SLUICE_CA)")
	flag.BoolVar(&sec.tls, "tls", false, "TLS with the system's roots")
	flag.StringVar(&sec.cert, "cert", os.Getenv("SLUICE_CERT"),
		"PEM client certificate, for mTLS (env SLUICE_CERT)")
	flag.StringVar(&sec.key, "key", os.Getenv("SLUICE_KEY"), "PEM key of -cert (env SLUICE_KEY)")
	flag.StringVar(&sec.token, "token", os.Getenv("SLUICE_TOKEN"),
		"bearer token (JWT or API key) for every call (env SLUICE_TOKEN)")
	flag.Parse()

	dial, err := sec.dialOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest-client:", err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "giving up:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := sluicev1.NewIngestServiceClient(conn)

	var records []*sluicev1.Record
	for i := 1; i <= *count; i++ {
		payload, _ := json.Marshal(map[string]any{"order": i, "total": 10.5 * float64(i)})
		records = append(records, &sluicev1.Record{
			Id: fmt.Sprintf("%s-%d", *prefix, i), Type: *typ, Key: fmt.Sprintf("customer-%d", i%2),
			Payload: payload, Attributes: map[string]string{"source": "go-example"},
		})
	}
	if len(records) > 0 { // the same id again: stored once, answered duplicate=true
		records = append(records, records[0])
	}
	for _, rec := range records {
		resp, err := ingest(client, rec, o)
		if err != nil {
			st := status.Convert(err)
			fmt.Fprintf(os.Stderr, "giving up: %s: %s%s\n", codeName(st.Code()), st.Message(),
				finalHint(st.Code()))
			os.Exit(1)
		}
		show(resp)
	}
}
