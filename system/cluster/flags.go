package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variable of every flag: --peer-pattern
// is ZZIM_PEER_PATTERN.
const EnvPrefix = "ZZIM_"

// configFileSizeMax bounds a configuration file.
const configFileSizeMax = 1 << 20

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Layer fills every flag not given on the command line from the
// environment (EnvName), then from the YAML file at path (if path is not
// empty), leaving the default otherwise: flag > env > file > default.
//
// The file is a mapping whose keys are flag names; a repeatable flag takes
// a list. Unknown keys, nested mappings and bad values are errors naming
// the line. In the environment a repeatable flag takes a comma-separated
// list. The flag named "config" itself is never read from the file.
func Layer(fs *pflag.FlagSet, path string, getenv func(string) string) error {
	file := map[string]fileValue{}
	if path != "" {
		var err error
		if file, err = readConfigFile(fs, path); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			for _, item := range envItems(f, v) {
				if err := fs.Set(f.Name, item); err != nil {
					errs = append(errs, fmt.Errorf("environment %s: %w", EnvName(f.Name), err))
				}
			}
			return
		}
		if fv, ok := file[f.Name]; ok {
			for _, item := range fv.items {
				if err := fs.Set(f.Name, item); err != nil {
					errs = append(errs, fmt.Errorf("%s line %d: %s: %w", path, fv.line, f.Name, err))
				}
			}
		}
	})
	return errors.Join(errs...)
}

func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Array") || strings.HasSuffix(t, "Slice")
}

func envItems(f *pflag.Flag, v string) []string {
	if !repeatable(f) {
		return []string{v}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

type fileValue struct {
	items []string
	line  int
}

func readConfigFile(fs *pflag.FlagSet, path string) (map[string]fileValue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, configFileSizeMax+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(b) > configFileSizeMax {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, configFileSizeMax)
	}
	return parseConfig(fs, path, b)
}

func parseConfig(fs *pflag.FlagSet, path string, b []byte) (map[string]fileValue, error) {
	out := map[string]fileValue{}
	if len(bytes.TrimSpace(b)) == 0 {
		return out, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return out, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s line %d: want a mapping of option names to values", path, top.Line)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		f := fs.Lookup(k.Value)
		if f == nil || k.Value == "config" || k.Value == "help" {
			return nil, fmt.Errorf("%s line %d: unknown key %q", path, k.Line, k.Value)
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("%s line %d: key %q given twice", path, k.Line, k.Value)
		}
		fv := fileValue{line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			fv.items = []string{v.Value}
		case yaml.SequenceNode:
			if !repeatable(f) {
				return nil, fmt.Errorf("%s line %d: %q takes one value, not a list", path, v.Line, k.Value)
			}
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s line %d: %q: list items must be plain values", path, it.Line, k.Value)
				}
				fv.items = append(fv.items, it.Value)
			}
		default:
			return nil, fmt.Errorf("%s line %d: %q: want a value or a list", path, v.Line, k.Value)
		}
		out[k.Value] = fv
	}
	return out, nil
}
