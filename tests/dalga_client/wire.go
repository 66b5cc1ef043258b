package main

// The wire types of Dalga v4, field for field, as data:
// JobJSON from github.com/cenkalti/dalga internal/table/job.go,
// Status from github.com/cenkalti/dalga internal/server/server.go.

// Job is the JSON of a job.
type Job struct {
	Path       string  `json:"path"`
	Body       string  `json:"body"`
	Interval   string  `json:"interval"`
	Location   string  `json:"location"`
	NextRun    *string `json:"next_run"`
	NextSched  string  `json:"next_sched"`
	InstanceID *uint32 `json:"instance_id"`
}

// Status is the JSON of GET /status.
type Status struct {
	InstanceID          uint32 `json:"instance_id"`
	InstanceRunningJobs int    `json:"instance_running_jobs"`
	RunningJobs         int64  `json:"running_jobs"`
	TotalJobs           int64  `json:"total_jobs"`
	PendingJobs         int64  `json:"pending_jobs"`
	TotalInstances      int64  `json:"total_instances"`
	Lag                 int64  `json:"lag"`
}

// Page is the JSON of GET /jobs and GET /jobs/continue (Dalga's server writes a map with
// these two keys).
type Page struct {
	Cursor string `json:"cursor"`
	Jobs   []Job  `json:"jobs"`
}
