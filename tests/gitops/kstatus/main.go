// Command kstatus prints what kstatus's status.Compute says of each object it reads, from
// sigs.k8s.io/cli-utils/pkg/kstatus/status (upstream) and from the copy Flux links,
// github.com/fluxcd/cli-utils/pkg/kstatus/status (a hard fork, used by kustomize-controller's
// and helm-controller's health checks).
//
// Input: YAML or JSON objects, several per stream (`---` between YAML documents, or a JSON
// stream), from the files named on the command line or from stdin. Output: one JSON array on
// stdout, one entry per object in input order:
//
//	{"status": "Current", "message": "...", "flux": {"status": "Current", "message": "..."}}
//
// with "error" instead of status and message when status.Compute refuses the object.
// `-version` prints the two module versions this binary was built with.
//
// Built and run by tests/gitops/kstatus_tool.py; keep it a thin wrapper: every decision is the
// library's.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

var libraries = []string{"sigs.k8s.io/cli-utils", "github.com/fluxcd/cli-utils"}

type verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

type result struct {
	verdict
	Flux verdict `json:"flux"`
}

func versions() []string {
	found := make([]string, 0, len(libraries))
	info, ok := debug.ReadBuildInfo()
	for _, library := range libraries {
		version := "unknown"
		if ok {
			for _, dep := range info.Deps {
				if dep.Path == library {
					version = dep.Version
				}
			}
		}
		found = append(found, library+" "+version)
	}
	return found
}

// read decodes every object of one stream. Objects are decoded like the API machinery does
// (integers as int64), so status.Compute sees what a client would hand it.
func read(in io.Reader) ([]map[string]interface{}, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var objects []map[string]interface{}
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		objects = append(objects, obj)
	}
}

func compute(obj map[string]interface{}) result {
	var out result
	// Each library gets its own copy: neither may see what the other did to the object.
	upstream := &unstructured.Unstructured{Object: obj}
	if res, err := status.Compute(upstream.DeepCopy()); err != nil {
		out.Error = err.Error()
	} else {
		out.Status, out.Message = res.Status.String(), res.Message
	}
	if res, err := fluxstatus.Compute(upstream.DeepCopy()); err != nil {
		out.Flux.Error = err.Error()
	} else {
		out.Flux.Status, out.Flux.Message = res.Status.String(), res.Message
	}
	return out
}

func main() {
	version := flag.Bool("version", false, "print the kstatus module versions and exit")
	flag.Parse()
	if *version {
		for _, line := range versions() {
			fmt.Println(line)
		}
		return
	}
	var objects []map[string]interface{}
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, name := range inputs {
		in := io.Reader(os.Stdin)
		if name != "-" {
			file, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "kstatus:", err)
				os.Exit(2)
			}
			defer file.Close()
			in = file
		}
		found, err := read(in)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", name, err)
			os.Exit(2)
		}
		objects = append(objects, found...)
	}
	results := make([]result, 0, len(objects))
	for _, obj := range objects {
		results = append(results, compute(obj))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
