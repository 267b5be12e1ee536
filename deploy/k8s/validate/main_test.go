package main

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// good is a minimal workload that passes every rule.
const good = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: web
          image: example/web:1.0
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /readyz, port: http}}
          livenessProbe: {grpc: {port: 8080}}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: "1", memory: 128Mi}
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
          env:
            - {name: WEB_MODE, value: quiet}
---
apiVersion: v1
kind: Secret
metadata: {name: web-db}
stringData: {uri: "mongodb://web:5f1c9e0b27a4d3@db/web"}
data: {token: "NmQ0YjFlOWEwYzNm"}
`

func validateText(t *testing.T, text string) []string {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	rep := &report{}
	objs, err := readDocuments("test", strings.NewReader(text), dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	checkPolicy(objs, rep)
	return rep.problems
}

func TestGoodPasses(t *testing.T) {
	if p := validateText(t, good); len(p) != 0 {
		t.Fatalf("unexpected problems:\n%s", strings.Join(p, "\n"))
	}
}

func TestExternalSecrets(t *testing.T) {
	text := strings.Replace(good, "          env:\n", "          envFrom: [{secretRef: {name: web-env}}]\n          env:\n", 1)
	if p := validateText(t, text); len(p) != 1 || !strings.Contains(p[0], `Secret "web-env", which is not in the input`) {
		t.Fatalf("want the missing Secret reported, got:\n%s", strings.Join(p, "\n"))
	}
	externalSecrets = true
	defer func() { externalSecrets = false }()
	if p := validateText(t, text); len(p) != 0 {
		t.Fatalf("with -external-secrets, want no problem, got:\n%s", strings.Join(p, "\n"))
	}
}

func TestDefectsAreNamed(t *testing.T) {
	cases := []struct{ name, from, to, want string }{
		{"unknown field", "replicas: 2", "replica: 2", `Deployment web: strict decoding error: unknown field "spec.replica"`},
		{"misspelt nested field", "containerPort: 8080", "containerPrt: 8080", `unknown field "spec.template.spec.containers[0].ports[0].containerPrt"`},
		{"duplicate field", "replicas: 2", "replicas: 2\n  replicas: 3", `key "replicas" already set`},
		{"wrong type", "replicas: 2", "replicas: two", "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnt", `no kind "Deploymnt" is registered for version "apps/v1"`},
		{"bad quantity", "cpu: 100m", "cpu: 100q", "quantities must match"},
		{"no limits", `limits: {cpu: "1", memory: 128Mi}`, `limits: {memory: 128Mi}`, "resources.limits.cpu is missing"},
		{"root", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot must be true"},
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"},
		{"no readiness", "readinessProbe: {httpGet: {path: /readyz, port: http}}", "startupProbe: {httpGet: {path: /readyz, port: http}}", "readinessProbe is missing"},
		{"latest image", "example/web:1.0", "example/web:latest", "is not pinned"},
		{"unknown probe port", "port: http}}", "port: htp}}", `readinessProbe.httpGet.port "htp" names no container port`},
		{"selector mismatch", "selector: {app: web}", "selector: {app: wbe}", "matches no pod template"},
		// Secrets must be real: a placeholder in one refuses the rendering.
		{"placeholder password", "web:5f1c9e0b27a4d3@", "web:change-me@", `Secret web-db: stringData.uri holds a placeholder ("change-me")`},
		{"placeholder in data", "NmQ0YjFlOWEwYzNm", "UExBQ0VIT0xERVJ4eXo=", `Secret web-db: data.token holds a placeholder ("placeholder")`},
		{"placeholder env", "value: quiet", "value: CHANGEME", `env WEB_MODE holds a placeholder ("changeme")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(good, c.from, c.to, 1)
			if text == good {
				t.Fatalf("replacement %q did not apply", c.from)
			}
			problems := validateText(t, text)
			joined := strings.Join(problems, "\n")
			if !strings.Contains(joined, c.want) {
				t.Fatalf("want a problem containing %q, got:\n%s", c.want, joined)
			}
			for _, p := range problems {
				if strings.Contains(p, "\n") {
					t.Errorf("problem spans lines: %q", p)
				}
			}
		})
	}
}
