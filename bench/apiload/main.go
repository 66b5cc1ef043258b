// Command apiload is bench/api.py's load client: `-count` requests of one method against
// BASE/jobs/PATH/<i> (i = 0 .. count-1) from `-clients` goroutines over keep-alive
// connections, standard library only, so that the client costs little of the 2 cores. It
// prints one JSON line: per_s, p50_ms, p99_ms, errors (answers outside 2xx and failed
// requests) and cpu_s (this process's user+system CPU seconds).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	base := flag.String("base", "http://127.0.0.1:34006", "the server's base URL")
	method := flag.String("method", "GET", "PUT, GET, PATCH or DELETE")
	query := flag.String("query", "", "query string of every request, without '?'")
	path := flag.String("path", "bench", "the jobs' path")
	count := flag.Int("count", 1000, "requests in all")
	clients := flag.Int("clients", 16, "concurrent clients")
	flag.Parse()

	transport := &http.Transport{MaxIdleConns: *clients, MaxIdleConnsPerHost: *clients}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	suffix := ""
	if *query != "" {
		suffix = "?" + *query
	}
	latencies := make([]time.Duration, *count)
	var errors int64
	var wg sync.WaitGroup
	started := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < *count; i += *clients {
				url := fmt.Sprintf("%s/jobs/%s/%d%s", *base, *path, i, suffix)
				req, err := http.NewRequest(*method, url, nil)
				if err != nil {
					panic(err)
				}
				t := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				latencies[i] = time.Since(t)
				if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
					atomic.AddInt64(&errors, 1)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(started)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/100) / 10 }
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"per_s":  int(float64(*count) / elapsed.Seconds()),
		"p50_ms": ms(latencies[(*count-1)/2]),
		"p99_ms": ms(latencies[(*count*99+99)/100-1]),
		"errors": errors,
		"cpu_s":  math.Round(cpu.Seconds()*1000) / 1000,
	})
}
