package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/zzim/zzim/system/node"
)

func TestParseTopology(t *testing.T) {
	cases := []struct {
		in      string
		want    map[node.Role]int
		wantErr string
	}{
		{in: "entry=2,logic=3", want: map[node.Role]int{node.RoleEntry: 2, node.RoleLogic: 3}},
		{in: " das = 1 ", want: map[node.Role]int{node.RoleDas: 1}},
		{in: "entry", wantErr: "want role=count"},
		{in: "gateway=1", wantErr: "unknown role"},
		{in: "logic=-1", wantErr: "count must be"},
		{in: "logic=101", wantErr: "count must be"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseTopology(c.in, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if FormatTopology(got) != FormatTopology(c.want) {
				t.Fatalf("got %s, want %s", FormatTopology(got), FormatTopology(c.want))
			}
		})
	}
}

func TestInternalPattern(t *testing.T) {
	topo := map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 2}
	got := InternalPattern(topo, "{role}-{slot}:7000")
	if got[node.Addr{Role: node.RoleLogic, Slot: 1}] != "logic-1:7000" {
		t.Fatalf("got %q, want logic-1:7000", got[node.Addr{Role: node.RoleLogic, Slot: 1}])
	}
	local := InternalPattern(topo, "127.0.0.1:{port}")
	if a := local[node.Addr{Role: node.RoleLogic, Slot: 1}]; a != "127.0.0.1:17201" {
		t.Fatalf("got %q, want 127.0.0.1:17201 (17000 + 100*2 + 1)", a)
	}
	if len(got) != 3 {
		t.Fatalf("got %d addresses, want 3", len(got))
	}
}

func flags() (*pflag.FlagSet, *string, *[]string, *int) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	s := fs.String("nats", "default-url", "")
	l := fs.StringArray("peer", nil, "")
	n := fs.Int("slot", 0, "")
	fs.String("config", "", "")
	return fs, s, l, n
}

func writeFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLayerPrecedence: flag > env > file > default, option by option.
func TestLayerPrecedence(t *testing.T) {
	file := writeFile(t, "nats: file-url\nslot: 2\npeer: [logic-0=a:1, logic-1=b:2]\n")
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantNATS string
		wantSlot int
		wantPeer string
	}{
		{"file", nil, nil, "file-url", 2, "logic-0=a:1,logic-1=b:2"},
		{"env over file", nil, map[string]string{"ZZIM_NATS": "env-url", "ZZIM_PEER": "das-0=c:3, das-1=d:4"}, "env-url", 2, "das-0=c:3,das-1=d:4"},
		{"flag over env", []string{"--nats", "flag-url", "--slot", "1"}, map[string]string{"ZZIM_NATS": "env-url", "ZZIM_SLOT": "5"}, "flag-url", 1, "logic-0=a:1,logic-1=b:2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs, nats, peers, slot := flags()
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if err := Layer(fs, file, func(k string) string { return c.env[k] }); err != nil {
				t.Fatalf("layer: %v", err)
			}
			if *nats != c.wantNATS || *slot != c.wantSlot || strings.Join(*peers, ",") != c.wantPeer {
				t.Fatalf("got nats=%s slot=%d peer=%s, want %s %d %s", *nats, *slot, strings.Join(*peers, ","), c.wantNATS, c.wantSlot, c.wantPeer)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		fs, nats, _, _ := flags()
		if err := Layer(fs, "", func(string) string { return "" }); err != nil || *nats != "default-url" {
			t.Fatalf("got %s, %v, want default-url", *nats, err)
		}
	})
}

func TestLayerStrictFile(t *testing.T) {
	cases := []struct{ name, body, wantErr string }{
		{"unknown key", "nats: x\nnatz: y\n", "line 2: unknown key \"natz\""},
		{"list for a single value", "nats: [a, b]\n", "takes one value"},
		{"nested mapping", "peer:\n  a: b\n", "want a value or a list"},
		{"bad value", "slot: many\n", "line 1: slot"},
		{"config key", "config: other.yaml\n", "unknown key \"config\""},
		{"not a mapping", "- a\n", "want a mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs, _, _, _ := flags()
			err := Layer(fs, writeFile(t, c.body), func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestNewNodeEveryRole(t *testing.T) {
	cfg := Config{Topology: DefaultTopology(), Secret: []byte("s")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, a := range Addrs(cfg.Topology) {
		if n := cfg.NewNode(a)(); n == nil {
			t.Fatalf("got nil node for %s", a)
		}
	}
	bad := Config{Topology: DefaultTopology()}
	if err := bad.Validate(); err == nil {
		t.Fatalf("got no error without a secret, want one")
	}
}
