// Package loadgen is zzim's open-loop load generator: every action has an
// intended time taken from a profile, and latency is measured from that
// time (no coordinated omission, as wrk2 does) as well as from when the
// request actually went on the wire. Clients are the reference client
// (system/client) over real TCP and long-poll, driven by system/clientrun.
//
// Profiles are YAML in the scenario workload vocabulary (scenarios/):
// users, conversations, rate, long_poll_share, churn, spikes, login_storm,
// plus the load shapes (arrivals, ramp, steps, sine, reconnect_storm,
// replay) that only a load run has.
package loadgen

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bounds of a profile.
const (
	// DurationMax bounds a run's traffic phase (and so its per-second rows).
	DurationMax = 24 * time.Hour
	// DrainMax bounds the drain after traffic stops.
	DrainMax = 10 * time.Minute
	// UsersMax bounds the users of one generator process (the open files
	// cap of 20,000 per process bounds TCP users in practice).
	UsersMax = 1_000_000
	// RateMax bounds any rate a profile names, per second.
	RateMax = 10_000_000
	// profileSizeMax bounds a profile file.
	profileSizeMax = 1 << 20
	// BodySizeMax bounds the message body size a profile asks for.
	BodySizeMax = 16 << 10
)

// Duration is a YAML duration ("30s"); negative values are errors.
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML reads "30s", naming the line on error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q: want a duration >= 0 like \"30s\"", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Profile is one load profile.
type Profile struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description,omitempty"`
	Duration    Duration `yaml:"duration"`
	// Drain: after traffic stops, how long outstanding sends may take to
	// be acknowledged (and, with --verify, clients to converge).
	Drain    Duration `yaml:"drain,omitempty"`
	Workload Workload `yaml:"workload"`
}

// Workload is what the users do. The first fields are the scenario
// vocabulary (scenarios.Workload); the rest are load shapes.
type Workload struct {
	Users         int     `yaml:"users"`
	Conversations int     `yaml:"conversations"`
	Rate          float64 `yaml:"rate"` // chat messages per second across all users (the baseline)
	LongPollShare float64 `yaml:"long_poll_share,omitempty"`
	Churn         *Churn  `yaml:"churn,omitempty"`
	Spikes        []Spike `yaml:"spikes,omitempty"`
	// LoginStorm: Clients more users log in at once at At (mass login).
	LoginStorm *LoginStorm `yaml:"login_storm,omitempty"`

	// Arrivals: "uniform" (evenly spaced at the current rate, the default)
	// or "poisson" (exponential gaps).
	Arrivals string `yaml:"arrivals,omitempty"`
	// Ramp moves the base rate linearly to To over [At, At+For].
	Ramp *Ramp `yaml:"ramp,omitempty"`
	// Steps set the base rate from At on.
	Steps []Step `yaml:"steps,omitempty"`
	// Sine modulates the rate: rate × (1 + amplitude × sin(2πt/period)).
	Sine *Sine `yaml:"sine,omitempty"`
	// ReconnectStorm: at At, Share of the TCP users lose their connection
	// at once and reconnect (as after an entry dies).
	ReconnectStorm *ReconnectStorm `yaml:"reconnect_storm,omitempty"`
	// Replay sends at the times of a recorded history's sends instead of
	// at the rate (Rate, Ramp, Steps, Sine, Spikes are then unused).
	Replay *Replay `yaml:"replay,omitempty"`
	// StartOver spreads the users' first logins over this long before
	// traffic starts (0: all at once, a login storm).
	StartOver Duration `yaml:"start_over,omitempty"`
	// BodySize pads each message body to this many bytes (at least the
	// timestamp the receiver reads).
	BodySize int `yaml:"body_size,omitempty"`
	// InflightMax: sends one TCP client pipelines (client default if 0;
	// 1 makes each client closed-loop, as wrk's connections are).
	InflightMax int `yaml:"inflight_max,omitempty"`
}

// Churn: clients losing their network and coming back.
type Churn struct {
	Rate    float64  `yaml:"rate"` // disconnects per second across all users
	Offline Duration `yaml:"offline,omitempty"`
}

// Spike multiplies the rate for a while (the flash sale).
type Spike struct {
	At         Duration `yaml:"at"`
	For        Duration `yaml:"for"`
	Multiplier float64  `yaml:"multiplier"`
}

// LoginStorm: Clients log in at once at At.
type LoginStorm struct {
	At      Duration `yaml:"at"`
	Clients int      `yaml:"clients"`
}

// Ramp moves the base rate to To over [At, At+For].
type Ramp struct {
	At  Duration `yaml:"at,omitempty"`
	For Duration `yaml:"for"`
	To  float64  `yaml:"to"`
}

// Step sets the base rate from At on.
type Step struct {
	At   Duration `yaml:"at"`
	Rate float64  `yaml:"rate"`
}

// Sine modulates the rate.
type Sine struct {
	Period    Duration `yaml:"period"`
	Amplitude float64  `yaml:"amplitude"` // 0..1, a fraction of the rate
}

// ReconnectStorm: Share of TCP users drop their connections at At.
type ReconnectStorm struct {
	At    Duration `yaml:"at"`
	Share float64  `yaml:"share"`
}

// Replay: a recorded history (check's JSON lines) whose send calls give
// the intended times, divided by Speed (2 replays twice as fast).
type Replay struct {
	File  string  `yaml:"file"`
	Speed float64 `yaml:"speed,omitempty"`
}

// Arrival processes.
const (
	ArrivalsUniform = "uniform"
	ArrivalsPoisson = "poisson"
)

//go:embed profiles/*.yaml
var embedded embed.FS

// Names lists the embedded profiles.
func Names() []string {
	ents, _ := embedded.ReadDir("profiles")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// ErrUnknownProfile: neither an embedded profile nor a readable file.
var ErrUnknownProfile = errors.New("unknown profile")

// LoadProfile reads an embedded profile by name, or a YAML file.
func LoadProfile(nameOrFile string) (*Profile, error) {
	if b, err := embedded.ReadFile(path.Join("profiles", nameOrFile+".yaml")); err == nil {
		return ParseProfile(b, nameOrFile+".yaml")
	}
	f, err := os.Open(nameOrFile)
	if err != nil {
		return nil, fmt.Errorf("%w %q (embedded: %s): %w", ErrUnknownProfile, nameOrFile, strings.Join(Names(), ", "), err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, profileSizeMax+1))
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", nameOrFile, err)
	}
	if len(b) > profileSizeMax {
		return nil, fmt.Errorf("profile %s: larger than %d bytes", nameOrFile, profileSizeMax)
	}
	return ParseProfile(b, nameOrFile)
}

// ParseProfile parses strictly: unknown keys and bad values are errors
// naming the line.
func ParseProfile(b []byte, name string) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	p := &Profile{}
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	return p, nil
}

// Validate checks the bounds and the shapes.
func (p *Profile) Validate() error {
	w := &p.Workload
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Duration.D() <= 0 || p.Duration.D() > DurationMax {
		bad("duration %s: want 0 < duration <= %s", p.Duration.D(), DurationMax)
	}
	if p.Drain.D() > DrainMax {
		bad("drain %s: want <= %s", p.Drain.D(), DrainMax)
	}
	if w.Users < 1 || w.Users > UsersMax {
		bad("users %d: want 1..%d", w.Users, UsersMax)
	}
	if w.Conversations < 0 || (w.Conversations > 0 && w.Users < 2) {
		bad("conversations %d: want >= 0, and two users at least for any", w.Conversations)
	}
	if w.Rate > 0 && w.Conversations == 0 && w.Replay == nil {
		bad("rate %g with no conversations", w.Rate)
	}
	checkRate := func(what string, r float64) {
		if r < 0 || r > RateMax || math.IsNaN(r) {
			bad("%s %g: want 0..%d per second", what, r, RateMax)
		}
	}
	checkRate("rate", w.Rate)
	if w.LongPollShare < 0 || w.LongPollShare > 1 {
		bad("long_poll_share %g: want 0..1", w.LongPollShare)
	}
	if w.Churn != nil {
		checkRate("churn rate", w.Churn.Rate)
	}
	for i, s := range w.Spikes {
		if s.For.D() <= 0 || s.Multiplier <= 0 || s.Multiplier*w.Rate > RateMax {
			bad("spikes[%d]: want for > 0 and 0 < multiplier (rate × multiplier <= %d)", i, RateMax)
		}
	}
	if w.LoginStorm != nil && (w.LoginStorm.Clients < 1 || w.Users+w.LoginStorm.Clients > UsersMax) {
		bad("login_storm clients %d: want 1..%d with the users", w.LoginStorm.Clients, UsersMax-w.Users)
	}
	switch w.Arrivals {
	case "", ArrivalsUniform, ArrivalsPoisson:
	default:
		bad("arrivals %q: want uniform or poisson", w.Arrivals)
	}
	if w.Ramp != nil {
		checkRate("ramp to", w.Ramp.To)
		if w.Ramp.For.D() <= 0 {
			bad("ramp for: want > 0")
		}
	}
	for i, s := range w.Steps {
		checkRate(fmt.Sprintf("steps[%d] rate", i), s.Rate)
		if i > 0 && s.At < w.Steps[i-1].At {
			bad("steps[%d]: at %s before the previous step", i, s.At.D())
		}
	}
	if w.Sine != nil && (w.Sine.Period.D() <= 0 || w.Sine.Amplitude < 0 || w.Sine.Amplitude > 1) {
		bad("sine: want period > 0 and amplitude 0..1")
	}
	if w.ReconnectStorm != nil && (w.ReconnectStorm.Share <= 0 || w.ReconnectStorm.Share > 1) {
		bad("reconnect_storm share %g: want 0 < share <= 1", w.ReconnectStorm.Share)
	}
	if w.Replay != nil && (w.Replay.File == "" || w.Replay.Speed < 0) {
		bad("replay: want a file and speed >= 0")
	}
	if w.BodySize < 0 || w.BodySize > BodySizeMax {
		bad("body_size %d: want 0..%d", w.BodySize, BodySizeMax)
	}
	if w.InflightMax < 0 {
		bad("inflight_max %d: want >= 0", w.InflightMax)
	}
	return errors.Join(errs...)
}

// SetRate replaces the baseline rate and scales every absolute rate of the
// shape (ramp target, steps) by the same factor, so --rate keeps the shape.
func (p *Profile) SetRate(r float64) {
	w := &p.Workload
	if w.Rate > 0 {
		f := r / w.Rate
		if w.Ramp != nil {
			w.Ramp.To *= f
		}
		for i := range w.Steps {
			w.Steps[i].Rate *= f
		}
	}
	w.Rate = r
}

// SetDuration changes the duration and scales every time of the shape by
// the same factor, so a spike stays in the same part of the run.
func (p *Profile) SetDuration(d time.Duration) {
	if p.Duration <= 0 {
		p.Duration = Duration(d)
		return
	}
	f := float64(d) / float64(p.Duration)
	sc := func(x *Duration) { *x = Duration(float64(*x) * f) }
	w := &p.Workload
	for i := range w.Spikes {
		sc(&w.Spikes[i].At)
		sc(&w.Spikes[i].For)
	}
	if w.LoginStorm != nil {
		sc(&w.LoginStorm.At)
	}
	if w.Ramp != nil {
		sc(&w.Ramp.At)
		sc(&w.Ramp.For)
	}
	for i := range w.Steps {
		sc(&w.Steps[i].At)
	}
	if w.ReconnectStorm != nil {
		sc(&w.ReconnectStorm.At)
	}
	p.Duration = Duration(d)
}
