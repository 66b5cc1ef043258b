// Dalga v4.0.1's own Go client (the root package of its tag, unmodified) against a
// celery-dalga server: every method and every schedule option, each answer checked against what
// Dalga's server writes, and a callback endpoint that checks what Dalga's scheduler sends.
//
// tests/test_dalga_client.py builds it in a scratch module whose go.mod takes the require and
// replace lines of ../shared/dalga-v4.0.1/server/go.mod (nothing of Dalga is kept here), then
//
//	dalgareal -api http://127.0.0.1:34006 -listen 127.0.0.1:5000
//
// It prints one "ok ..." line per check and exits 0, or prints "FAIL ..." and exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dalga "github.com/cenkalti/dalga/v4"
	"github.com/senseyeio/duration"
)

// A time as Go's time.RFC3339 layout writes it: whole seconds, Z or an offset.
var rfc3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$`)

type call struct {
	path, body, sched, instance, contentType string
}

// endpoint records every callback; a path listed in fail answers 500 that many times first.
type endpoint struct {
	mu    sync.Mutex
	calls []call
	fail  map[string]int
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, call{
		path:        r.URL.Path,
		body:        string(body),
		sched:       r.Header.Get("Dalga-Sched"),
		instance:    r.Header.Get("Dalga-Instance"),
		contentType: r.Header.Get("Content-Type"),
	})
	if e.fail[r.URL.Path] > 0 {
		e.fail[r.URL.Path]--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (e *endpoint) waitFor(path string, n int) []call {
	deadline := time.Now().Add(30 * time.Second)
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
	fail("%s: fewer than %d calls in 30 s", path, n)
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

// dalgaTime checks that text is an instant as Dalga writes it on the location's wall clock,
// and returns it.
func dalgaTime(text, location string) time.Time {
	loc := must(time.LoadLocation(location))
	t, err := time.Parse(time.RFC3339, text)
	if err != nil || !rfc3339.MatchString(text) || t.In(loc).Format(time.RFC3339) != text {
		fail("%q is not an RFC 3339 time in whole seconds on %s's wall clock", text, location)
	}
	return t
}

// checkJob checks a job that is not running against what Dalga writes for it.
func checkJob(j *dalga.Job, path, body, interval, location string, paused bool) {
	ok := j.Path == path && j.Body == body && j.Interval == interval && j.Location == location
	ok = ok && j.InstanceID == nil && (j.NextRun == nil) == paused
	sched := dalgaTime(j.NextSched, location)
	if j.NextRun != nil {
		ok = ok && !dalgaTime(*j.NextRun, location).Before(sched)
	}
	check(ok, "job %s/%s: %s", path, body, show(j))
}

func show(j *dalga.Job) string {
	next := "null"
	if j.NextRun != nil {
		next = *j.NextRun
	}
	return fmt.Sprintf("interval=%s location=%s next_run=%s next_sched=%s", j.Interval, j.Location, next, j.NextSched)
}

func near(t, want time.Time) bool {
	d := t.Sub(want)
	return d > -5*time.Second && d < 5*time.Second
}

// listAll lists with List, then ListContinue until an empty page, checking each page's size.
func listAll(c *dalga.Client, path, sortBy string, reverse bool, limit int64) []dalga.Job {
	ctx := context.Background()
	jobs, cursor := must2(c.List(ctx, path, sortBy, reverse, limit))
	var all []dalga.Job
	for len(jobs) > 0 {
		if limit > 0 && int64(len(jobs)) > limit {
			fail("a page of %d jobs, limit %d", len(jobs), limit)
		}
		if cursor == "" {
			fail("a page of jobs without a cursor")
		}
		all = append(all, jobs...)
		jobs, cursor = must2(c.ListContinue(ctx, cursor))
	}
	if cursor != "" {
		fail("an empty page with a cursor %q", cursor)
	}
	return all
}

func must2(jobs []dalga.Job, cursor string, err error) ([]dalga.Job, string) {
	if err != nil {
		fail("%v", err)
	}
	return jobs, cursor
}

func bodies(jobs []dalga.Job) string {
	var b []string
	for _, j := range jobs {
		b = append(b, j.Body)
	}
	return strings.Join(b, " ")
}

func keys(jobs []dalga.Job) string {
	var k []string
	for _, j := range jobs {
		k = append(k, j.Path+"/"+j.Body)
	}
	sort.Strings(k)
	return strings.Join(k, " ")
}

func waitGone(c *dalga.Client, path, body string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Get(context.Background(), path, body); err == dalga.ErrNotExist {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail("%s/%s was not deleted after its run", path, body)
}

func main() {
	api := flag.String("api", "http://127.0.0.1:34006", "the server's base URL")
	listen := flag.String("listen", "127.0.0.1:5000", "where the callback endpoint listens")
	flag.Parse()
	ep := &endpoint{fail: map[string]int{"/retry": 1}}
	listener := must(net.Listen("tcp", *listen))
	go func() { _ = http.Serve(listener, ep) }()

	ctx := context.Background()
	c := dalga.NewClient(*api+"/", dalga.WithClient(&http.Client{Timeout: 30 * time.Second}))
	status := must(c.Status(ctx))
	fmt.Printf("status: %+v\n", *status)
	check(status.TotalInstances >= 1 && status.TotalJobs == 0, "Status of an empty server")

	_, err := c.Get(ctx, "when", "where")
	check(err == dalga.ErrNotExist, "Get of a missing job is ErrNotExist")
	_, err = c.Disable(ctx, "when", "where")
	check(err == dalga.ErrNotExist, "Disable of a missing job is ErrNotExist")
	_, err = c.Enable(ctx, "when", "where")
	check(err == dalga.ErrNotExist, "Enable of a missing job is ErrNotExist")
	check(c.Cancel(ctx, "when", "where") == nil, "Cancel of a missing job is no error")

	now := time.Now()
	job := must(c.Schedule(ctx, "when", "where", dalga.MustWithIntervalString("PT1M")))
	checkJob(job, "when", "where", "PT1M", "UTC", false)
	check(*job.NextRun == job.NextSched && strings.HasSuffix(job.NextSched, "Z") &&
		near(dalgaTime(job.NextSched, "UTC"), now.Add(time.Minute)),
		"Schedule PT1M: next run in a minute, in UTC (Z)")
	got := must(c.Get(ctx, "when", "where"))
	check(*got.NextRun == *job.NextRun && got.NextSched == job.NextSched, "Get returns the scheduled job")
	disabled := must(c.Disable(ctx, "when", "where"))
	checkJob(disabled, "when", "where", "PT1M", "UTC", true)
	check(disabled.NextSched == job.NextSched, "Disable: next_run null, next_sched kept")
	got = must(c.Get(ctx, "when", "where"))
	check(got.NextRun == nil, "Get of a disabled job: next_run null")
	enabled := must(c.Enable(ctx, "when", "where"))
	checkJob(enabled, "when", "where", "PT1M", "UTC", false)
	check(*enabled.NextRun == job.NextSched, "Enable before the next run: next_run is next_sched again")
	check(c.Cancel(ctx, "when", "where") == nil, "Cancel")
	_, err = c.Get(ctx, "when", "where")
	check(err == dalga.ErrNotExist, "Get after Cancel is ErrNotExist")
	check(c.Cancel(ctx, "when", "where") == nil, "Cancel again is no error")

	live := map[string]bool{}
	seconds := must(c.Schedule(ctx, "every", "90s", dalga.WithInterval(duration.Duration{TS: 90})))
	checkJob(seconds, "every", "90s", "PT90S", "UTC", false)
	live["every/90s"] = true
	mixed := must(c.Schedule(ctx, "every", "day-and-half", dalga.WithInterval(duration.Duration{D: 1, TH: 12})))
	checkJob(mixed, "every", "day-and-half", "P1DT12H", "UTC", false)
	live["every/day-and-half"] = true

	ist := must(time.LoadLocation("Europe/Istanbul"))
	first := time.Now().Add(48 * time.Hour).Truncate(time.Second).In(ist)
	report := must(c.Schedule(ctx, "report", "ist", dalga.MustWithIntervalString("P1D"),
		dalga.MustWithLocationName("Europe/Istanbul"), dalga.WithFirstRun(first)))
	checkJob(report, "report", "ist", "P1D", "Europe/Istanbul", false)
	check(report.NextSched == first.Format(time.RFC3339) && strings.HasSuffix(report.NextSched, "+03:00"),
		"Schedule with location and first-run: %s", report.NextSched)
	live["report/ist"] = true
	la := must(time.LoadLocation("America/Los_Angeles"))
	weekly := must(c.Schedule(ctx, "report", "la", dalga.MustWithIntervalString("P1W"),
		dalga.WithLocation(la), dalga.WithFirstRun(first.In(la))))
	checkJob(weekly, "report", "la", "P1W", "America/Los_Angeles", false)
	check(weekly.NextSched == first.In(la).Format(time.RFC3339), "WithLocation: %s", weekly.NextSched)
	got = must(c.Get(ctx, "report", "la"))
	check(got.NextSched == weekly.NextSched, "Get shows the job's wall clock too")
	live["report/la"] = true

	delayed := must(c.Schedule(ctx, "remind", "later", dalga.WithOneOff(), dalga.MustWithIntervalString("PT1H")))
	checkJob(delayed, "remind", "later", "P0D", "UTC", false)
	check(near(dalgaTime(delayed.NextSched, "UTC"), time.Now().Add(time.Hour)), "one-off with a delay: interval P0D, in an hour")
	live["remind/later"] = true

	once := must(c.Schedule(ctx, "hook", "once", dalga.WithOneOff(), dalga.WithImmediate(),
		dalga.MustWithLocationName("Europe/Istanbul")))
	checkJob(once, "hook", "once", "P0D", "Europe/Istanbul", false)
	cb := ep.waitFor("/hook", 1)[0]
	check(cb.body == "once" && cb.contentType == "text/plain", "callback body and Content-Type %q", cb.contentType)
	check(cb.sched == once.NextSched, "Dalga-Sched is next_sched as Dalga writes it: %s", cb.sched)
	_, err = strconv.ParseUint(cb.instance, 10, 32)
	check(err == nil, "Dalga-Instance is an instance id: %s", cb.instance)
	waitGone(c, "hook", "once")
	check(true, "a one-off job is gone after its run")

	past := must(c.Schedule(ctx, "past", "1990", dalga.WithOneOff(),
		dalga.WithFirstRun(time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))))
	check(past.NextSched == "1990-01-01T00:00:00Z", "one-off with a first-run in the past: %s", past.NextSched)
	cb = ep.waitFor("/past", 1)[0]
	check(cb.sched == "1990-01-01T00:00:00Z", "a first-run in the past runs at once, Dalga-Sched %s", cb.sched)
	waitGone(c, "past", "1990")

	retried := must(c.Schedule(ctx, "retry", "1", dalga.WithOneOff(), dalga.WithImmediate()))
	calls := ep.waitFor("/retry", 2)
	check(calls[0].sched == retried.NextSched && calls[1].sched == retried.NextSched,
		"Dalga-Sched on the first call and the retry: %s, %s", calls[0].sched, calls[1].sched)
	waitGone(c, "retry", "1")

	tick := must(c.Schedule(ctx, "tick", "1", dalga.MustWithIntervalString("PT1S"), dalga.WithImmediate()))
	checkJob(tick, "tick", "1", "PT1S", "UTC", false)
	ticks := ep.waitFor("/tick", 2)
	check(ticks[0].sched == tick.NextSched && ticks[1].sched != ticks[0].sched &&
		dalgaTime(ticks[1].sched, "UTC").After(dalgaTime(ticks[0].sched, "UTC")),
		"a periodic job is called again with the next Dalga-Sched: %s, %s", ticks[0].sched, ticks[1].sched)
	check(c.Cancel(ctx, "tick", "1") == nil, "Cancel a periodic job")

	for i := 0; i < 5; i++ {
		body := strconv.Itoa(i)
		must(c.Schedule(ctx, "list", body, dalga.WithInterval(duration.Duration{TS: 600 - i})))
		live["list/"+body] = true
	}
	bySched := listAll(c, "list", "next-sched", false, 2)
	check(bodies(bySched) == "4 3 2 1 0", "List by next-sched, 2 a page, and ListContinue: %s", bodies(bySched))
	byID := listAll(c, "list", "insert-order", false, 2)
	check(bodies(byID) == "0 1 2 3 4", "List in insert order and ListContinue: %s", bodies(byID))
	reversed, cursor := must2(c.List(ctx, "list", "", true, 0))
	check(bodies(reversed) == "4 3 2 1 0" && cursor != "", "List reversed, no limit: %s", bodies(reversed))
	for _, j := range reversed {
		checkJob(&j, "list", j.Body, fmt.Sprintf("PT%dS", 600-must(strconv.Atoi(j.Body))), "UTC", false)
	}
	var want []string
	for k := range live {
		want = append(want, k)
	}
	sort.Strings(want)
	everything, _ := must2(c.List(ctx, "", "", false, 0))
	check(keys(everything) == strings.Join(want, " "), "List with path \"\" lists every job: %s", keys(everything))
	paged := listAll(c, "", "insert-order", false, 3)
	check(keys(paged) == strings.Join(want, " "), "List with path \"\", 3 a page, and ListContinue: %d jobs", len(paged))
	for _, j := range paged {
		dalgaTime(j.NextSched, j.Location)
	}
	none, cursor := must2(c.List(ctx, "nothing", "next-sched", true, 10))
	check(len(none) == 0 && cursor == "", "List of a path without jobs: empty, no cursor")

	status = must(c.Status(ctx))
	fmt.Printf("status: %+v\n", *status)
	check(status.TotalJobs == int64(len(live)) && status.PendingJobs >= 0 && status.Lag >= 0 &&
		status.RunningJobs >= 0, "Status counts %d jobs", status.TotalJobs)

	for k := range live {
		path, body, _ := strings.Cut(k, "/")
		check(c.Cancel(ctx, path, body) == nil, "Cancel %s", k)
	}
	rest, cursor := must2(c.List(ctx, "", "", false, 0))
	check(len(rest) == 0 && cursor == "", "no job is left")
	fmt.Println("ok every call")
}
