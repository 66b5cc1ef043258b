// Kala's own Go client (package client of github.com/ajvb/kala at 4eb4f7a, unmodified) against a
// server with Kala's API: every client call, each answer checked against what Kala's server
// gives. It runs against celery-dalga and, as a peer check, against Kala itself.
//
// tests/test_kala_client.py builds it in a scratch module whose go.mod takes the require and
// replace lines of ../shared/kala-4eb4f7a/kala/go.mod (nothing of Kala is kept here), then
//
//	kalareal -url http://127.0.0.1:34006 -remote http://127.0.0.1:5000/ -touch /tmp/x/ran \
//		-server celery-dalga
//
// -server names whose behaviour to expect where celery-dalga differs from Kala on purpose
// (docs/coming-from-kala.md): a job whose last run is over is kept by Kala with is_done, and
// deleted by celery-dalga (its stats stay); StartJob may answer before the run is over.
//
// Remote jobs call -remote + "kala/<name>" with POST (the test's endpoint records them); the
// local job runs `touch <-touch>`. Progress goes to stderr, one "ok ..." line per check; at
// the end one JSON line of results goes to stdout and it exits 0, or it prints "FAIL ..." and
// exits 1.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ajvb/kala/client"
	"github.com/ajvb/kala/job"
)

var uuidText = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// An id no server has made: version 4, as Kala's ids are.
const unknownID = "00000000-0000-4000-8000-000000000000"

var checks int

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func check(ok bool, what string, args ...interface{}) {
	if !ok {
		fail(what, args...)
	}
	checks++
	fmt.Fprintf(os.Stderr, "ok "+what+"\n", args...)
}

func must[T any](v T, err error) T {
	if err != nil {
		fail("%v", err)
	}
	return v
}

func show(v interface{}) string {
	text, _ := json.Marshal(v)
	return string(text)
}

// waitFor polls until done() holds, for at most 30 s.
func waitFor(what string, done func() bool) {
	deadline := time.Now().Add(90 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			fail("%s: not within 90 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	check(true, "%s", what)
}

// startIn is a schedule start d from now, in whole seconds (RFC 3339), and that instant.
func startIn(d time.Duration) (string, time.Time) {
	at := time.Now().Add(d).Truncate(time.Second).UTC()
	return at.Format(time.RFC3339), at
}

func remoteJob(name, url string) *job.Job {
	return &job.Job{
		Name:    name,
		JobType: job.RemoteJob,
		RemoteProperties: job.RemoteProperties{
			Url:    url,
			Method: "POST",
			Body:   fmt.Sprintf(`{"job": %q}`, name),
		},
	}
}

func create(c *client.KalaClient, j *job.Job) string {
	id := must(c.CreateJob(j))
	check(uuidText.MatchString(id), "CreateJob %s: 201 with a UUID id (%s)", j.Name, id)
	return id
}

func get(c *client.KalaClient, id string) *job.Job {
	j := must(c.GetJob(id))
	check(j != nil && j.Id == id, "GetJob %s: the job", id)
	return j
}

func gone(c *client.KalaClient, id string) {
	j, err := c.GetJob(id)
	check(j == nil && err == client.ErrJobNotFound, "GetJob %s: 404 (ErrJobNotFound), got %v", id, err)
}

func stats(c *client.KalaClient, id string) []*job.JobStat {
	s, err := c.GetJobStats(id)
	if err != nil {
		fail("GetJobStats %s: %v", id, err)
	}
	return s
}

func checkStat(s *job.JobStat, id string, since time.Time) {
	ok := s.JobId == id && s.Success && s.NumberOfRetries == 0 && s.ExecutionDuration > 0
	ok = ok && !s.RanAt.Before(since.Add(-time.Second)) && s.RanAt.Before(time.Now().Add(time.Second))
	check(ok, "job stat of %s: %s", id, show(s))
}

// near: Kala's next_run_at is now plus the wait, a little off the schedule's instant.
func near(t, want time.Time) bool {
	d := t.Sub(want)
	return -time.Second < d && d < time.Second
}

// waitFinished waits until the job's last run is over, `runs` runs in all, each a success:
// Kala keeps the job with is_done; celery-dalga deletes it, and its stats stay.
func waitFinished(c *client.KalaClient, id string, runs uint, keeps bool) {
	waitFor(fmt.Sprintf("%s: %d runs, then done", id, runs), func() bool {
		if len(stats(c, id)) < int(runs) {
			return false
		}
		j, err := c.GetJob(id)
		if !keeps {
			return j == nil && err == client.ErrJobNotFound
		}
		m := j.Metadata
		return j.IsDone && m.SuccessCount == runs && m.NumberOfFinishedRuns == runs && m.ErrorCount == 0
	})
}

func statusError(err error, code int) bool {
	return err != nil && strings.HasSuffix(err.Error(), fmt.Sprintf("status code of %d", code))
}

func main() {
	base := flag.String("url", "", "the server, e.g. http://127.0.0.1:34006 (the client adds /api/v1)")
	remote := flag.String("remote", "", "base URL of the endpoint remote jobs call, ending in /")
	touch := flag.String("touch", "", "the file the local job creates")
	server := flag.String("server", "", "kala or celery-dalga: whose behaviour to expect")
	flag.Parse()
	if *base == "" || !strings.HasSuffix(*remote, "/") || *touch == "" {
		fail("usage: kalareal -url BASE -remote http://host:port/ -touch FILE -server kala|celery-dalga")
	}
	if *server != "kala" && *server != "celery-dalga" {
		fail("-server is kala or celery-dalga, not %q", *server)
	}
	keeps := *server == "kala" // a job whose last run is over stays
	began := time.Now()
	c := client.New(*base)

	// A fresh server.
	all := must(c.GetAllJobs())
	check(all != nil && len(all) == 0, "GetAllJobs on a fresh server: {} (%s)", show(all))
	ks := must(c.GetKalaStats())
	check(ks != nil && ks.Jobs == 0 && ks.ActiveJobs == 0 && ks.DisabledJobs == 0,
		"GetKalaStats on a fresh server: no jobs (%s)", show(ks))

	// What is refused, and unknown ids.
	_, err := c.CreateJob(&job.Job{Command: "true"})
	check(err == client.ErrJobCreationError, "CreateJob without a name: 400 (%v)", err)
	_, err = c.CreateJob(&job.Job{Name: "no-url", JobType: job.RemoteJob})
	check(err == client.ErrJobCreationError, "CreateJob of a remote job without a url: 400 (%v)", err)
	past := remoteJob("past", *remote+"kala/past")
	past.Schedule = "R2/2017-06-04T19:25:16.828696-07:00/PT10S"
	_, err = c.CreateJob(past)
	check(err == client.ErrJobCreationError, "CreateJob with a start in the past: 400 (%v)", err)
	gone(c, unknownID)
	started, err := c.StartJob(unknownID)
	check(!started && err == nil, "StartJob of an unknown id: (false, nil), got (%v, %v)", started, err)
	_, err = c.DisableJob(unknownID)
	check(statusError(err, 404), "DisableJob of an unknown id: 404 (%v)", err)
	_, err = c.EnableJob(unknownID)
	check(statusError(err, 404), "EnableJob of an unknown id: 404 (%v)", err)
	_, err = c.DeleteJob(unknownID)
	check(statusError(err, 404), "DeleteJob of an unknown id: 404 (%v)", err)
	_, err = c.GetJobStats(unknownID)
	check(err == client.ErrGenericError, "GetJobStats of an unknown id: 404 (%v)", err)
	all = must(c.GetAllJobs())
	check(len(all) == 0, "nothing refused was stored (%s)", show(all))

	// A remote job far in the future, with every remote property and Kala's other fields.
	hourly, hourlyAt := startIn(time.Hour)
	rj := remoteJob("kala-remote", *remote+"kala/remote")
	rj.Owner = "ops@example.com"
	rj.Schedule = "R/" + hourly + "/PT1H"
	rj.Retries = 2
	rj.Epsilon = "PT5S"
	rj.RemoteProperties.Headers = http.Header{"X-Kala-Test": {"one", "two"}}
	rj.RemoteProperties.Timeout = 10 // seconds: room for a loaded 2-core machine
	rj.RemoteProperties.ExpectedResponseCodes = []int{200, 201}
	remoteID := create(c, rj)

	// A local job without a schedule: it runs once, now.
	localID := create(c, &job.Job{Name: "kala-local", Command: "touch " + *touch})

	// A remote job with R1: two runs, two seconds apart.
	soon, soonAt := startIn(2 * time.Second)
	repeat := remoteJob("kala-repeat", *remote+"kala/repeat")
	repeat.Schedule = "R1/" + soon + "/PT2S"
	repeatID := create(c, repeat)

	got := get(c, remoteID)
	rp := got.RemoteProperties
	ok := got.Name == "kala-remote" && got.Owner == "ops@example.com" && got.Schedule == rj.Schedule
	ok = ok && got.Retries == 2 && got.Epsilon == "PT5S" && got.JobType == job.RemoteJob && !got.Disabled
	ok = ok && !got.IsDone && got.Command == "" && len(got.ParentJobs) == 0 && len(got.DependentJobs) == 0
	ok = ok && rp.Url == rj.RemoteProperties.Url && strings.ToUpper(rp.Method) == "POST"
	ok = ok && rp.Body == rj.RemoteProperties.Body && rp.Timeout == 10
	ok = ok && reflect.DeepEqual(rp.Headers["X-Kala-Test"], []string{"one", "two"})
	ok = ok && reflect.DeepEqual(rp.ExpectedResponseCodes, []int{200, 201})
	ok = ok && near(got.NextRunAt, hourlyAt) && got.Metadata.SuccessCount == 0
	check(ok, "GetJob of the remote job: its fields as created (%s)", show(got))
	check(len(stats(c, remoteID)) == 0, "GetJobStats of a job that has not run: none")

	// StartJob: one run now; the schedule stays.
	check(must(c.StartJob(remoteID)), "StartJob of the remote job: 204")
	waitFor("the manual run of the remote job is in its stats", func() bool {
		return len(stats(c, remoteID)) >= 1
	})
	got = get(c, remoteID)
	m := got.Metadata
	ok = m.SuccessCount == 1 && m.ErrorCount == 0 && m.NumberOfFinishedRuns == 1
	ok = ok && !m.LastSuccess.IsZero() && !m.LastAttemptedRun.IsZero() && !got.IsDone && !got.Disabled
	check(ok, "the remote job's metadata after StartJob (%s)", show(got))

	// DisableJob and EnableJob.
	check(must(c.DisableJob(remoteID)), "DisableJob of the remote job: 204")
	check(get(c, remoteID).Disabled, "GetJob: disabled")
	ks = must(c.GetKalaStats())
	check(ks.DisabledJobs == 1, "GetKalaStats: one disabled job (%s)", show(ks))
	check(must(c.EnableJob(remoteID)), "EnableJob of the remote job: 204")
	check(!get(c, remoteID).Disabled, "GetJob: enabled again")

	// The local job and the R1 job ran on their own.
	waitFor("the local job ran (its file exists)", func() bool {
		_, err := os.Stat(*touch)
		return err == nil
	})
	waitFinished(c, localID, 1, keeps)
	waitFinished(c, repeatID, 2, keeps) // R1: two runs

	// Dependent jobs: two children of one parent.
	parent := remoteJob("kala-parent", *remote+"kala/parent")
	parent.Schedule = "R/" + hourly + "/PT1H"
	parentID := create(c, parent)
	child := remoteJob("kala-child", *remote+"kala/child")
	child.ParentJobs = []string{parentID}
	childID := create(c, child)
	child2 := remoteJob("kala-child2", *remote+"kala/child2")
	child2.ParentJobs = []string{parentID}
	child2ID := create(c, child2)
	got = get(c, parentID)
	check(reflect.DeepEqual(got.DependentJobs, []string{childID, child2ID}),
		"GetJob of the parent: dependent_jobs are its children in order (%v)", got.DependentJobs)
	got = get(c, childID)
	check(reflect.DeepEqual(got.ParentJobs, []string{parentID}) && got.Schedule == "",
		"GetJob of a child: parent_jobs (%v)", got.ParentJobs)
	check(len(stats(c, childID)) == 0, "a child does not run when it is created")
	check(must(c.StartJob(parentID)), "StartJob of the parent: 204")
	waitFor("both children ran after the parent", func() bool {
		return len(stats(c, childID)) == 1 && len(stats(c, child2ID)) == 1
	})
	// Kala updates parents and children after it answers a delete (in goroutines).
	check(must(c.DeleteJob(childID)), "DeleteJob of a child: 204")
	gone(c, childID)
	waitFor("the parent's dependent_jobs lose the deleted child", func() bool {
		j, err := c.GetJob(parentID)
		return err == nil && reflect.DeepEqual(j.DependentJobs, []string{child2ID})
	})
	check(must(c.DeleteJob(parentID)), "DeleteJob of the parent: 204")
	gone(c, parentID)
	waitFor("a child whose only parent is deleted is deleted too", func() bool {
		j, err := c.GetJob(child2ID)
		return j == nil && err == client.ErrJobNotFound
	})

	// Nothing ran twice; every run is in the stats.
	time.Sleep(2 * time.Second)
	remoteStats, localStats, repeatStats := stats(c, remoteID), stats(c, localID), stats(c, repeatID)
	check(len(remoteStats) == 1, "the remote job ran once (%s)", show(remoteStats))
	checkStat(remoteStats[0], remoteID, began)
	check(len(localStats) == 1, "the local job ran once (%s)", show(localStats))
	checkStat(localStats[0], localID, began)
	check(len(repeatStats) == 2, "the R1 job ran twice (%s)", show(repeatStats))
	checkStat(repeatStats[0], repeatID, began)
	checkStat(repeatStats[1], repeatID, began)
	slack := 100 * time.Millisecond
	ok = !repeatStats[0].RanAt.Before(soonAt.Add(-slack))
	ok = ok && !repeatStats[1].RanAt.Before(soonAt.Add(2*time.Second-slack))
	check(ok, "the R1 job's runs are at its start and a period later, not before")

	all = must(c.GetAllJobs())
	names := make([]string, 0, len(all))
	for id, j := range all {
		check(j.Id == id, "GetAllJobs: %s is keyed by its id", id)
		names = append(names, j.Name)
	}
	sort.Strings(names)
	left, successes := []string{"kala-remote"}, uint(1)
	if keeps {
		left, successes = []string{"kala-local", "kala-remote", "kala-repeat"}, 4
	}
	check(reflect.DeepEqual(names, left), "GetAllJobs: the jobs left (%v)", names)
	ks = must(c.GetKalaStats())
	ok = ks.Jobs == len(left) && ks.ActiveJobs == len(left) && ks.DisabledJobs == 0
	ok = ok && ks.SuccessCount == successes && ks.ErrorCount == 0 && !ks.CreatedAt.IsZero()
	ok = ok && !ks.LastAttemptedRun.Before(began.Add(-time.Second))
	check(ok, "GetKalaStats: %d jobs, %d successes (%s)", len(left), successes, show(ks))

	// DeleteJob and DeleteAllJobs.
	check(must(c.DeleteJob(remoteID)), "DeleteJob of the remote job: 204")
	gone(c, remoteID)
	all = must(c.GetAllJobs())
	check(len(all) == len(left)-1, "GetAllJobs after DeleteJob: %d jobs (%s)", len(left)-1, show(all))
	check(must(c.DeleteAllJobs()), "DeleteAllJobs: 204")
	all = must(c.GetAllJobs())
	check(len(all) == 0, "GetAllJobs after DeleteAllJobs: {} (%s)", show(all))
	ks = must(c.GetKalaStats())
	check(ks.Jobs == 0, "GetKalaStats after DeleteAllJobs: no jobs (%s)", show(ks))

	fmt.Println(show(map[string]interface{}{
		"ok":     true,
		"checks": checks,
		"ids": map[string]string{
			"remote": remoteID, "local": localID, "repeat": repeatID,
			"parent": parentID, "child": childID, "child2": child2ID,
		},
		"remote_stats": remoteStats,
		"repeat_stats": repeatStats,
	}))
}
