// gocheck: Go's own readings of texts, for scripts/gocheck.py to compare galley's with.
//
// galley-runc reads command lines and config.json as runc, a Go program, reads them. This
// program prints, for each line of standard input (a Go-quoted string, or for `decode` a JSON
// document), what Go's standard library or runc's dependencies make of it, one line each:
//
//	strconv    ParseInt base 0 | ParseInt base 10 | ParseUint base 10 | ParseBool | time.ParseDuration
//	size       docker/go-units' RAMInBytes (and "-1", as runc's update reads it)
//	quote      strconv.Quote
//	marshal    json.Marshal of the string (what runc prints: state, list, events, logs)
//	clean      filepath.Clean of an absolute path (runc's filepath.Abs of --bundle)
//	signal     strconv.Atoi, then strings.ToUpper and x/sys/unix's SignalNum of the name
//	syntax     a json.Decoder's first value of the (quoted) text, as runc reads a config
//	schema T   (no input) every JSON path of a runtime-spec Go type, with its kind
//	decode T   encoding/json of the document into that type: "ok" or the error
//	zone       (no input) the local zone's offset as runc's log lines end their time, "Z07:00",
//	           for the $TZ the program is started with
//
// T is spec (a config.json), process (exec --process) or resources (update --resources).
//
// Errors print as "E <message>"; strings are Go-quoted so that a line stays a line.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func numberError(err error) string {
	if errors.Is(err, strconv.ErrRange) {
		return "range"
	}
	return "syntax"
}

func readings(s string) string {
	var out []string
	for _, base := range []int{0, 10} {
		if v, err := strconv.ParseInt(s, base, 64); err == nil {
			out = append(out, strconv.FormatInt(v, 10))
		} else {
			out = append(out, numberError(err))
		}
	}
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		out = append(out, strconv.FormatUint(v, 10))
	} else {
		out = append(out, numberError(err))
	}
	if v, err := strconv.ParseBool(s); err == nil {
		out = append(out, strconv.FormatBool(v))
	} else {
		out = append(out, "syntax")
	}
	if v, err := time.ParseDuration(s); err == nil {
		out = append(out, strconv.FormatInt(int64(v), 10))
	} else {
		out = append(out, "syntax")
	}
	return strings.Join(out, "|")
}

func size(s string) string {
	if s == "-1" { // runc's update takes it for "unlimited" before asking go-units
		return "-1"
	}
	v, err := units.RAMInBytes(s)
	if err != nil {
		return strconv.Quote("E " + err.Error())
	}
	return strconv.FormatInt(v, 10)
}

func signal(s string) string {
	if n, err := strconv.Atoi(s); err == nil {
		return strconv.Itoa(n)
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n := unix.SignalNum(name); n != 0 {
		return strconv.Itoa(int(n))
	}
	return "unknown"
}

func schema(t reflect.Type, path string) {
	switch t.Kind() {
	case reflect.Ptr:
		schema(t.Elem(), path)
	case reflect.Struct:
		fmt.Printf("%s\tobject\n", path)
		for i := 0; i < t.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			if path != "" {
				name = path + "." + name
			}
			schema(t.Field(i).Type, name)
		}
	case reflect.Slice:
		fmt.Printf("%s\tarray\n", path)
		schema(t.Elem(), path+"[]")
	case reflect.Map:
		fmt.Printf("%s\tmap\n", path)
		schema(t.Elem(), path+"{}")
	default:
		fmt.Printf("%s\t%s\n", path, t.Kind())
	}
}

// documents: the Go type runc decodes each kind of document into.
var documents = map[string]func() interface{}{
	"spec":      func() interface{} { return &specs.Spec{} },
	"process":   func() interface{} { return &specs.Process{} },
	"resources": func() interface{} { return &specs.LinuxResources{} },
}

func decode(kind string, document []byte) string {
	if err := json.NewDecoder(bytes.NewReader(document)).Decode(documents[kind]()); err != nil {
		return "E " + err.Error()
	}
	return "ok"
}

func syntax(text string) string {
	var value json.RawMessage // the bytes as they are: syntax alone, no number's range
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&value); err != nil {
		return strconv.Quote("E " + err.Error())
	}
	return "ok"
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "zone" {
		// the local zone's offset as a log line's RFC 3339 time ends, for this process's $TZ
		fmt.Println(time.Now().Format("Z07:00"))
		return
	}
	kind := "spec"
	if len(os.Args) == 3 && (os.Args[1] == "schema" || os.Args[1] == "decode") {
		kind = os.Args[2]
	} else if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocheck strconv|size|quote|marshal|clean|signal|syntax|schema T|decode T|zone")
		os.Exit(2)
	}
	if _, known := documents[kind]; !known {
		fmt.Fprintln(os.Stderr, "gocheck: unknown document type", kind)
		os.Exit(2)
	}
	if os.Args[1] == "schema" {
		schema(reflect.TypeOf(documents[kind]()).Elem(), "")
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		if os.Args[1] == "decode" {
			fmt.Fprintln(out, decode(kind, in.Bytes()))
			continue
		}
		text, err := strconv.Unquote(in.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, "gocheck: a line that is no Go-quoted string:", in.Text())
			os.Exit(2)
		}
		switch os.Args[1] {
		case "strconv":
			fmt.Fprintln(out, readings(text))
		case "size":
			fmt.Fprintln(out, size(text))
		case "quote":
			fmt.Fprintln(out, strconv.Quote(text))
		case "clean":
			fmt.Fprintln(out, strconv.Quote(filepath.Clean(text)))
		case "marshal":
			encoded, _ := json.Marshal(text) // a string always encodes
			fmt.Fprintln(out, string(encoded))
		case "signal":
			fmt.Fprintln(out, signal(text))
		case "syntax":
			fmt.Fprintln(out, syntax(text))
		default:
			fmt.Fprintln(os.Stderr, "gocheck: unknown reading", os.Args[1])
			os.Exit(2)
		}
	}
}
