package main

// Every call of Dalga v4's client against a celery-dalga server, checked as Dalga's own client
// tests check them, and a callback endpoint that checks what Dalga's endpoint would get.
//
//	dalgaclient -api http://127.0.0.1:34006 -listen 127.0.0.1:5000
//
// It prints one "ok ..." line per check and exits 0, or prints "FAIL ..." and exits 1.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

type call struct {
	path, body, sched, instance, contentType string
}

type endpoint struct {
	mu    sync.Mutex
	calls []call
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.calls = append(e.calls, call{
		path:        r.URL.Path,
		body:        string(body),
		sched:       r.Header.Get("Dalga-Sched"),
		instance:    r.Header.Get("Dalga-Instance"),
		contentType: r.Header.Get("Content-Type"),
	})
	e.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (e *endpoint) waitFor(path string, n int, timeout time.Duration) []call {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		var found []call
		for _, c := range e.calls {
			if c.path == path {
				found = append(found, c)
			}
		}
		e.mu.Unlock()
		if len(found) >= n {
			return found
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("%s: fewer than %d calls in %s", path, n, timeout)
	return nil
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func check(ok bool, what string, args ...interface{}) {
	if !ok {
		fail(what, args...)
	}
	fmt.Printf("ok "+what+"\n", args...)
}

func must[T any](v T, err error) T {
	if err != nil {
		fail("%v", err)
	}
	return v
}

func rfc3339(text string) time.Time {
	t, err := time.Parse(time.RFC3339, text)
	if err != nil {
		fail("not RFC 3339: %q", text)
	}
	return t
}

func main() {
	api := flag.String("api", "http://127.0.0.1:34006", "the server's base URL")
	listen := flag.String("listen", "127.0.0.1:5000", "where the callback endpoint listens")
	flag.Parse()
	ep := &endpoint{}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		fail("listen: %v", err)
	}
	go func() { _ = http.Serve(listener, ep) }()

	ctx := context.Background()
	c := NewClient(*api)

	status := must(c.Status(ctx))
	check(status.TotalInstances >= 1, "Status: %d instance(s), this one %d", status.TotalInstances, status.InstanceID)

	_, err = c.Get(ctx, "when", "where")
	check(err == ErrNotExist, "Get of a missing job is ErrNotExist")

	job := must(c.Schedule(ctx, "when", "where", ScheduleOptions{Interval: "PT1M"}))
	check(job.Body == "where" && job.Path == "when" && job.Interval == "PT1M", "Schedule returns the job %+v", *job)
	check(job.NextRun != nil && rfc3339(*job.NextRun).Equal(rfc3339(job.NextSched)), "next_run is next_sched, RFC 3339")
	check(job.InstanceID == nil && job.Location == "UTC", "a job not running has no instance, location UTC")

	got := must(c.Get(ctx, "when", "where"))
	check(got.NextSched == job.NextSched && got.Interval == job.Interval, "Get returns the scheduled job")

	_, err = c.Disable(ctx, "no", "job")
	check(err == ErrNotExist, "Disable of a missing job is ErrNotExist")
	disabled := must(c.Disable(ctx, "when", "where"))
	check(disabled.NextRun == nil, "Disable: next_run is null")
	enabled := must(c.Enable(ctx, "when", "where"))
	check(enabled.NextRun != nil && !rfc3339(*enabled.NextRun).IsZero(), "Enable: next_run is back")
	_, err = c.Enable(ctx, "no", "job")
	check(err == ErrNotExist, "Enable of a missing job is ErrNotExist")

	check(c.Cancel(ctx, "when", "where") == nil, "Cancel")
	_, err = c.Get(ctx, "when", "where")
	check(err == ErrNotExist, "Get after Cancel is ErrNotExist")
	check(c.Cancel(ctx, "when", "where") == nil, "Cancel again (idempotent)")

	la, _ := time.LoadLocation("America/Los_Angeles")
	first := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	located := must(c.Schedule(ctx, "report", "la", ScheduleOptions{Interval: "P1D", Location: la, FirstRun: first}))
	check(located.Location == "America/Los_Angeles" && rfc3339(located.NextSched).Equal(first),
		"Schedule with location and first-run: %s", located.NextSched)
	_, offset := rfc3339(located.NextSched).Zone()
	check(offset != 0, "times are on the job's wall clock (offset %d s)", offset)
	delayed := must(c.Schedule(ctx, "remind", "later", ScheduleOptions{OneOff: true, Interval: "PT1H"}))
	check(delayed.Interval == "P0D" && delayed.NextRun != nil, "one-off with a delay: interval P0D")

	once := must(c.Schedule(ctx, "hook", "once", ScheduleOptions{OneOff: true, Immediate: true}))
	check(once.Interval == "P0D", "one-off immediate job scheduled")
	calls := ep.waitFor("/hook", 1, 30*time.Second)
	cb := calls[0]
	check(cb.body == "once" && cb.contentType != "" && cb.contentType[:10] == "text/plain", "callback body and Content-Type: %q", cb.contentType)
	check(rfc3339(cb.sched).Equal(rfc3339(once.NextSched)), "callback Dalga-Sched is the job's next_sched: %s", cb.sched)
	_, err = strconv.ParseUint(cb.instance, 10, 32)
	check(err == nil, "callback Dalga-Instance is an instance id: %s", cb.instance)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err = c.Get(ctx, "hook", "once"); err == ErrNotExist {
			break
		}
		if time.Now().After(deadline) {
			fail("the one-off job was not deleted after its run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	check(true, "a one-off job is gone after its run")

	must(c.Schedule(ctx, "tick", "1", ScheduleOptions{Interval: "PT1S", Immediate: true}))
	ticks := ep.waitFor("/tick", 2, 30*time.Second)
	check(ticks[0].sched != ticks[1].sched, "a periodic job is called again with the next Dalga-Sched")

	for i := 0; i < 5; i++ {
		must(c.Schedule(ctx, "list", strconv.Itoa(i), ScheduleOptions{Interval: "PT" + strconv.Itoa(600-i) + "S"}))
	}
	var bodies []string
	page := must(c.List(ctx, url.Values{"path": {"list"}, "sort-by": {"next-sched"}, "limit": {"2"}}))
	for len(page.Jobs) > 0 {
		for _, j := range page.Jobs {
			bodies = append(bodies, j.Body)
		}
		page = must(c.ListContinue(ctx, page.Cursor))
	}
	check(fmt.Sprint(bodies) == "[4 3 2 1 0]" && page.Cursor == "", "List by next-sched and continue: %v", bodies)
	reversed := must(c.List(ctx, url.Values{"path": {"list"}, "reverse": {"true"}}))
	check(len(reversed.Jobs) == 5 && reversed.Jobs[0].Body == "4", "List reversed in insert order")

	status = must(c.Status(ctx))
	check(status.TotalJobs >= 8 && status.Lag >= 0, "Status: %+v", *status)

	for _, j := range [][2]string{{"report", "la"}, {"remind", "later"}, {"tick", "1"}} {
		must(0, c.Cancel(ctx, j[0], j[1]))
	}
	for i := 0; i < 5; i++ {
		must(0, c.Cancel(ctx, "list", strconv.Itoa(i)))
	}
	fmt.Println("ok every call")
}
