// Command ingest-client is a Sluice client example: it ingests N records,
// retrying each with the SAME id.
//
// Record.Id is the idempotency key: a retry after UNAVAILABLE (the record may
// or may not be stored) is stored once, and the answer then says
// duplicate=true with the original sequence. The stubs in gen/ come from
// proto/ through buf generate (run.sh).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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

type options struct {
	timeout, backoff, maxBackoff time.Duration
	attempts                     int
}

// ingest makes one Ingest call per attempt, each under its own deadline, with
// exponential backoff and jitter in between. The record, id included, never changes.
func ingest(client sluicev1.IngestServiceClient, rec *sluicev1.Record, o options) (*sluicev1.IngestResponse, error) {
	backoff := o.backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		resp, err := client.Ingest(ctx, &sluicev1.IngestRequest{Record: rec})
		cancel()
		code := status.Code(err)
		if err == nil || !retryable(code) || attempt >= o.attempts {
			return resp, err
		}
		pause := time.Duration(float64(backoff) * (0.5 + rand.Float64()/2))
		fmt.Fprintf(os.Stderr, "retry id=%s attempt=%d code=%s wait=%s: %s\n",
			rec.Id, attempt, code, pause.Round(time.Millisecond), status.Convert(err).Message())
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
	flag.Parse()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
			fmt.Fprintf(os.Stderr, "giving up: %s: %s\n", st.Code(), st.Message())
			os.Exit(1)
		}
		show(resp)
	}
}
