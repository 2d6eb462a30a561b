package scenarios

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a scenario error with its place: "file:line: message".
type Error struct {
	File string
	Line int // 0 when unknown (a Scenario built in code)
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Size limits: a scenario is a small hand-written file.
const (
	fileSizeMax   = 1 << 20
	sequenceMax   = 10_000 // entries of any list (faults, spikes, broadcast times)
	nestingMax    = 16
	scalarSizeMax = 4096
)

// Parse decodes and validates one scenario file. filename only labels errors.
func Parse(filename string, data []byte) (*Scenario, error) {
	if len(data) > fileSizeMax {
		return nil, &Error{File: filename, Msg: fmt.Sprintf("file of %d bytes exceeds %d", len(data), fileSizeMax)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(filename, err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil, &Error{File: filename, Line: 1, Msg: "empty scenario"}
	}
	d := &decoder{file: filename, lines: map[string]int{}}
	s := &Scenario{}
	if err := d.decode(root.Content[0], reflect.ValueOf(s).Elem(), "", 0); err != nil {
		return nil, err
	}
	s.applyDefaults()
	if err := s.validate(d.lineOf); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = filename
		}
		return nil, err
	}
	return s, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError rewrites a syntax error as "file:line: message".
func yamlError(file string, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	return &Error{File: file, Line: line, Msg: m[2]}
}

// decoder walks a yaml.Node tree into a struct by its yaml tags. It is strict
// where yaml.Decoder with KnownFields is not specific enough: every error
// names the line, duplicate keys and aliases are refused, and it records the
// line of every path ("faults[2].target") so validation errors can name it too.
type decoder struct {
	file  string
	lines map[string]int
}

// scalarParser is implemented by types with a vocabulary (Duration, Verdict, FaultKind).
type scalarParser interface{ parseScalar(s string) error }

func (d *decoder) errf(n *yaml.Node, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// lineOf returns the line of path, or of its closest recorded parent.
func (d *decoder) lineOf(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return d.lines[""]
		}
		path = path[:i]
	}
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) error {
	d.lines[path] = n.Line
	if depth > nestingMax {
		return d.errf(n, "nested too deep")
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errf(n, "anchors and aliases are not allowed")
	}
	if p, ok := v.Addr().Interface().(scalarParser); ok {
		if err := d.scalar(n, path); err != nil {
			return err
		}
		if err := p.parseScalar(n.Value); err != nil {
			return d.errf(n, "bad value %q for %s: %v", n.Value, name(path), err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return nil
		}
		v.Set(reflect.New(v.Type().Elem()))
		return d.decode(n, v.Elem(), path, depth+1)
	case reflect.Struct:
		return d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		return d.decodeSlice(n, v, path, depth)
	case reflect.Map:
		return d.decodeMap(n, v, path, depth)
	}
	return d.decodeScalar(n, v, path)
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "bad value for %s: want a mapping", name(path))
	}
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, "bad key in %s: want a name", name(path))
		}
		idx, ok := fields[k.Value]
		if !ok {
			return d.errf(k, "unknown key %q", k.Value)
		}
		if seen[k.Value] {
			return d.errf(k, "duplicate key %q", k.Value)
		}
		seen[k.Value] = true
		if err := d.decode(val, v.Field(idx), join(path, k.Value), depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return d.errf(n, "bad value for %s: want a list", name(path))
	}
	if len(n.Content) > sequenceMax {
		return d.errf(n, "%s has %d entries, more than %d", name(path), len(n.Content), sequenceMax)
	}
	if len(n.Content) == 0 {
		return nil // nil, not empty: Marshal omits it, so Parse(Marshal(s)) equals s
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		if err := d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// decodeMap decodes map[string]string (fault params).
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "bad value for %s: want a mapping", name(path))
	}
	if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
		panic("scenarios: only map[string]string is supported")
	}
	if len(n.Content) == 0 {
		return nil
	}
	m := reflect.MakeMap(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, "bad key in %s: want a name", name(path))
		}
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			return d.errf(k, "duplicate key %q", k.Value)
		}
		p := join(path, k.Value)
		d.lines[p] = k.Line
		if err := d.scalar(val, p); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val.Value))
	}
	v.Set(m)
	return nil
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) error {
	if err := d.scalar(n, path); err != nil {
		return err
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
			return d.errf(n, "bad value %q for %s: want an integer", s, name(path))
		}
		v.SetInt(i)
	case reflect.Uint64:
		u, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return d.errf(n, "bad value %q for %s: want a non-negative integer", s, name(path))
		}
		v.SetUint(u)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return d.errf(n, "bad value %q for %s: want a number", s, name(path))
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("scenarios: unsupported field kind %v at %s", v.Kind(), path))
	}
	return nil
}

// scalar checks n is a non-null scalar of bounded size.
func (d *decoder) scalar(n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return d.errf(n, "bad value for %s: want a single value", name(path))
	}
	if len(n.Value) > scalarSizeMax {
		return d.errf(n, "value of %s longer than %d bytes", name(path), scalarSizeMax)
	}
	return nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// name is how errors call a path.
func name(path string) string {
	if path == "" {
		return "the scenario"
	}
	return path
}
