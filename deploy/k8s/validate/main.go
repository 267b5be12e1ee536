// Command validate checks rendered Kubernetes manifests offline.
//
// It reads multi-document YAML (the output of `kustomize build`) from the
// files named on the command line, or from standard input when there are
// none or the name is "-", and:
//
//  1. decodes every object strictly into the real Kubernetes API Go types
//     (k8s.io/api, through client-go's scheme): an unknown apiVersion/kind,
//     an unknown or duplicated field, or a value of the wrong type is an
//     error;
//  2. applies a few cheap policy rules to every workload (resources, probes,
//     a non-root read-only container, pinned images) and refuses a Secret
//     or a literal environment value holding a placeholder ("change-me");
//  3. checks references between the objects (ConfigMaps, Secrets, Services,
//     HPA targets, PDB and Service selectors, StatefulSet serviceName).
//
// Every problem is printed on its own line naming the source, the document,
// the object and the problem; the exit status is 1 when there was any, 2 on a
// usage or read error, 0 otherwise.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// object is one decoded document.
type object struct {
	src        string // file name, or "<stdin>"
	index      int    // 1-based document number inside src
	apiVersion string
	kind       string
	namespace  string
	name       string
	obj        runtime.Object // nil when decoding failed
}

func (o *object) String() string {
	name := o.name
	if name == "" {
		name = "<unnamed>"
	}
	if o.namespace != "" {
		name = o.namespace + "/" + name
	}
	av, kind := o.apiVersion, o.kind
	if av == "" {
		av = "<no apiVersion>"
	}
	if kind == "" {
		kind = "<no kind>"
	}
	return fmt.Sprintf("%s: doc %d: %s %s %s", o.src, o.index, av, kind, name)
}

// report collects problems, one line each.
type report struct {
	problems []string
}

func (r *report) add(o *object, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	msg = strings.Join(lines, " ")
	r.problems = append(r.problems, fmt.Sprintf("%s: %s", o, msg))
}

// head is what is read from a document before decoding it strictly, to
// name it in messages even when strict decoding fails.
type head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
		Namespace    string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func main() {
	strictOnly := flag.Bool("strict-only", false, "only decode strictly; skip the policy and reference checks")
	flag.BoolVar(&externalSecrets, "external-secrets", false, "Secrets are managed outside the input: a reference to one that is missing is no error")
	quiet := flag.Bool("q", false, "print nothing on success")
	source := flag.String("source", "<stdin>", "the name of standard input in messages")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: %s [-strict-only] [-q] [-source NAME] [FILE|-]...\n"+
				"Decodes every Kubernetes object in the multi-document YAML FILEs (stdin when none)\n"+
				"strictly into the Kubernetes API types and checks Sluice's deployment rules.\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	files := flag.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}

	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	decoder := codecs.UniversalDeserializer()

	rep := &report{}
	var objs []*object
	for _, f := range files {
		var r io.Reader
		src := f
		if f == "-" {
			r, src = os.Stdin, *source
		} else {
			fh, err := os.Open(f)
			if err != nil {
				fmt.Fprintf(os.Stderr, "validate: %v\n", err)
				os.Exit(2)
			}
			defer fh.Close()
			r = fh
		}
		got, err := readDocuments(src, r, decoder, rep)
		if err != nil {
			fmt.Fprintf(os.Stderr, "validate: %s: %v\n", src, err)
			os.Exit(2)
		}
		objs = append(objs, got...)
	}

	if len(objs) == 0 && len(rep.problems) == 0 {
		fmt.Fprintln(os.Stderr, "validate: no Kubernetes objects in the input")
		os.Exit(1)
	}

	if !*strictOnly {
		checkPolicy(objs, rep)
	}

	if len(rep.problems) > 0 {
		for _, p := range rep.problems {
			fmt.Fprintln(os.Stderr, "FAIL "+p)
		}
		fmt.Fprintf(os.Stderr, "validate: %d problem(s) in %d object(s)\n", len(rep.problems), len(objs))
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("ok: %d objects (%s)\n", len(objs), summary(objs))
	}
}

// readDocuments splits r into YAML documents and decodes each strictly.
func readDocuments(src string, r io.Reader, decoder runtime.Decoder, rep *report) ([]*object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []*object
	for index := 1; ; index++ {
		data, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", index, err)
		}
		if isEmptyDocument(data) {
			index--
			continue
		}
		objs = append(objs, decodeDocument(src, index, data, decoder, rep)...)
	}
	return objs, nil
}

func isEmptyDocument(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		return false
	}
	return true
}

// decodeDocument decodes one document (expanding a v1 List) into typed
// objects. A document that fails is still returned, with obj nil, so that it
// is counted.
func decodeDocument(src string, index int, data []byte, decoder runtime.Decoder, rep *report) []*object {
	o := &object{src: src, index: index}

	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		// Name the object if a lenient reading can.
		if loose, lerr := yaml.YAMLToJSON(data); lerr == nil {
			if h, herr := readHead(loose); herr == nil {
				o.apiVersion, o.kind = h.APIVersion, h.Kind
				o.namespace, o.name = h.Metadata.Namespace, h.Metadata.Name
			}
		}
		rep.add(o, "invalid YAML: %v", err)
		return []*object{o}
	}
	h, err := readHead(jsonData)
	if err != nil {
		rep.add(o, "not a Kubernetes object: %v", err)
		return []*object{o}
	}
	o.apiVersion, o.kind = h.APIVersion, h.Kind
	o.namespace, o.name = h.Metadata.Namespace, h.Metadata.Name
	if o.name == "" {
		o.name = h.Metadata.GenerateName
	}

	if o.apiVersion == "v1" && o.kind == "List" {
		var out []*object
		for i, item := range h.Items {
			sub := decodeDocument(fmt.Sprintf("%s: doc %d: List item %d", src, index, i+1), 0, item, decoder, rep)
			out = append(out, sub...)
		}
		return out
	}
	if o.apiVersion == "" || o.kind == "" {
		rep.add(o, "apiVersion and kind are required")
		return []*object{o}
	}

	obj, gvk, err := decoder.Decode(jsonData, nil, nil)
	if err != nil {
		rep.add(o, "%s", cleanDecodeError(err))
		return []*object{o}
	}
	if gvk != nil && (gvk.GroupVersion().String() != o.apiVersion || gvk.Kind != o.kind) {
		rep.add(o, "decoded as %s, not as written", gvk)
		return []*object{o}
	}
	o.obj = obj
	if h.Metadata.Name == "" && h.Metadata.GenerateName == "" {
		rep.add(o, "metadata.name is required")
	}
	return []*object{o}
}

// readHead reads apiVersion, kind, name and namespace leniently: a field of
// the wrong type is left empty here and reported by the strict decoder.
func readHead(jsonData []byte) (head, error) {
	var h head
	var m map[string]any
	if err := json.Unmarshal(jsonData, &m); err != nil {
		return h, err
	}
	str := func(v any) string { s, _ := v.(string); return s }
	h.APIVersion, h.Kind = str(m["apiVersion"]), str(m["kind"])
	if md, ok := m["metadata"].(map[string]any); ok {
		h.Metadata.Name = str(md["name"])
		h.Metadata.GenerateName = str(md["generateName"])
		h.Metadata.Namespace = str(md["namespace"])
	}
	if items, ok := m["items"].([]any); ok {
		for _, it := range items {
			b, err := json.Marshal(it)
			if err != nil {
				return h, err
			}
			h.Items = append(h.Items, b)
		}
	}
	return h, nil
}

// cleanDecodeError turns the scheme's and the strict decoder's messages into
// one line.
func cleanDecodeError(err error) string {
	msg := err.Error()
	if runtime.IsNotRegisteredError(err) {
		msg = "unknown apiVersion/kind: " + msg
	}
	if i := strings.Index(msg, ` in scheme "`); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// checkPolicy runs the rules past strict decoding: duplicates, per-object
// rules and, when every object decoded, references between objects.
func checkPolicy(objs []*object, rep *report) {
	checkDuplicates(objs, rep)
	undecoded := 0
	for _, o := range objs {
		if o.obj == nil {
			undecoded++
			continue
		}
		checkObject(o, rep)
	}
	if undecoded == 0 {
		checkReferences(objs, rep)
	} else {
		// A missing object would make its references look dangling.
		fmt.Fprintf(os.Stderr, "validate: reference checks skipped: %d object(s) failed to decode\n", undecoded)
	}
}

func checkDuplicates(objs []*object, rep *report) {
	seen := map[string]*object{}
	for _, o := range objs {
		if o.obj == nil {
			continue
		}
		group := o.apiVersion
		if i := strings.Index(group, "/"); i >= 0 {
			group = group[:i]
		} else {
			group = ""
		}
		k := group + "|" + o.kind + "|" + o.namespace + "|" + o.name
		if first, ok := seen[k]; ok {
			rep.add(o, "duplicate object, first defined at %s doc %d", first.src, first.index)
			continue
		}
		seen[k] = o
	}
}

func summary(objs []*object) string {
	count := map[string]int{}
	for _, o := range objs {
		count[o.kind]++
	}
	kinds := make([]string, 0, len(count))
	for k := range count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, count[k]))
	}
	return strings.Join(parts, ", ")
}
