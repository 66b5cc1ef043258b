package main

// A client that speaks to a Dalga server the way Dalga v4's client.go does: the same
// requests (PUT with a form body, PATCH with ?enable=true / ?disable=true, paths put into the
// URL as they are), the same status codes expected (201 for PUT, 204 for DELETE, 404 meaning
// "job does not exist") and the same decoding (encoding/json into the wire types), plus the
// listing routes of Dalga's server, which its client has no method for.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

var ErrNotExist = errors.New("job does not exist")

type Client struct {
	BaseURL string
	http    *http.Client
}

func NewClient(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}
}

// ScheduleOptions are the options Dalga's client turns into PUT's form values.
type ScheduleOptions struct {
	Interval  string // an ISO 8601 duration, as duration.Duration.String() writes it
	Location  *time.Location
	FirstRun  time.Time
	OneOff    bool
	Immediate bool
}

func (c *Client) jobURL(path, body string) string {
	return fmt.Sprintf("%s/jobs/%s/%s", c.BaseURL, path, body)
}

func (c *Client) do(ctx context.Context, method, url string, form url.Values, want int) ([]byte, int, error) {
	var reader *strings.Reader
	if form != nil {
		reader = strings.NewReader(form.Encode())
	} else {
		reader = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reader)
	if err != nil {
		return nil, 0, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusNotFound && want != http.StatusNoContent {
		return nil, resp.StatusCode, ErrNotExist
	}
	if resp.StatusCode != want {
		return nil, resp.StatusCode, fmt.Errorf("unexpected status code: %d, body: %q", resp.StatusCode, buf.String())
	}
	return buf.Bytes(), resp.StatusCode, nil
}

func decode[T any](data []byte) (*T, error) {
	var v T
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&v); err != nil {
		return nil, fmt.Errorf("cannot unmarshal body: %q, cause: %w", data, err)
	}
	return &v, nil
}

func (c *Client) Get(ctx context.Context, path, body string) (*Job, error) {
	data, _, err := c.do(ctx, http.MethodGet, c.jobURL(path, body), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decode[Job](data)
}

func (c *Client) Schedule(ctx context.Context, path, body string, o ScheduleOptions) (*Job, error) {
	values := make(url.Values)
	if o.Interval != "" {
		values.Set("interval", o.Interval)
	}
	if o.Location != nil {
		values.Set("location", o.Location.String())
	}
	if !o.FirstRun.IsZero() {
		values.Set("first-run", o.FirstRun.Format(time.RFC3339))
	}
	if o.OneOff {
		values.Set("one-off", "true")
	}
	if o.Immediate {
		values.Set("immediate", "true")
	}
	data, _, err := c.do(ctx, http.MethodPut, c.jobURL(path, body), values, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	return decode[Job](data)
}

func (c *Client) setEnabled(ctx context.Context, path, body string, enabled bool) (*Job, error) {
	action := "enable"
	if !enabled {
		action = "disable"
	}
	data, _, err := c.do(ctx, http.MethodPatch, c.jobURL(path, body)+"?"+action+"=true", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decode[Job](data)
}

func (c *Client) Disable(ctx context.Context, path, body string) (*Job, error) {
	return c.setEnabled(ctx, path, body, false)
}

func (c *Client) Enable(ctx context.Context, path, body string) (*Job, error) {
	return c.setEnabled(ctx, path, body, true)
}

func (c *Client) Cancel(ctx context.Context, path, body string) error {
	_, _, err := c.do(ctx, http.MethodDelete, c.jobURL(path, body), nil, http.StatusNoContent)
	return err
}

func (c *Client) Status(ctx context.Context) (*Status, error) {
	data, _, err := c.do(ctx, http.MethodGet, c.BaseURL+"/status", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decode[Status](data)
}

func (c *Client) List(ctx context.Context, query url.Values) (*Page, error) {
	data, _, err := c.do(ctx, http.MethodGet, c.BaseURL+"/jobs?"+query.Encode(), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decode[Page](data)
}

func (c *Client) ListContinue(ctx context.Context, cursor string) (*Page, error) {
	query := url.Values{"cursor": {cursor}}
	data, _, err := c.do(ctx, http.MethodGet, c.BaseURL+"/jobs/continue?"+query.Encode(), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decode[Page](data)
}
