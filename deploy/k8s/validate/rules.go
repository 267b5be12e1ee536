package main

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// podTemplate returns the pod template of a workload, and whether the
// workload runs long-lived containers (which then need probes).
func podTemplate(obj any) (*corev1.PodTemplateSpec, bool) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template, true
	case *appsv1.StatefulSet:
		return &w.Spec.Template, true
	case *appsv1.DaemonSet:
		return &w.Spec.Template, true
	case *appsv1.ReplicaSet:
		return &w.Spec.Template, true
	case *batchv1.Job:
		return &w.Spec.Template, false
	case *batchv1.CronJob:
		return &w.Spec.JobTemplate.Spec.Template, false
	case *corev1.Pod:
		return &corev1.PodTemplateSpec{ObjectMeta: w.ObjectMeta, Spec: w.Spec}, true
	}
	return nil, false
}

// placeholders are the markers of a value someone was meant to replace:
// a Secret holding one (or a literal environment value) refuses the
// rendering, so that no "change-me" password reaches a cluster.
var placeholders = []string{"change-me", "changeme", "change_me", "replace-me", "replaceme", "placeholder"}

func placeholderIn(v string) string {
	lower := strings.ToLower(v)
	for _, p := range placeholders {
		if strings.Contains(lower, p) {
			return p
		}
	}
	return ""
}

// checkSecret refuses a Secret with a placeholder in any value; the value
// itself is never printed.
func checkSecret(o *object, sec *corev1.Secret, rep *report) {
	keys := func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	data := map[string]string{}
	for k, v := range sec.Data {
		data[k] = string(v)
	}
	for _, k := range keys(data) {
		if p := placeholderIn(data[k]); p != "" {
			rep.add(o, "data.%s holds a placeholder (%q): generate real secrets (deploy/k8s/secrets.sh) or supply them", k, p)
		}
	}
	for _, k := range keys(sec.StringData) {
		if p := placeholderIn(sec.StringData[k]); p != "" {
			rep.add(o, "stringData.%s holds a placeholder (%q): generate real secrets (deploy/k8s/secrets.sh) or supply them", k, p)
		}
	}
}

// checkObject applies the per-object rules.
func checkObject(o *object, rep *report) {
	if tpl, longLived := podTemplate(o.obj); tpl != nil {
		checkPodSpec(o, &tpl.Spec, longLived, rep)
	}
	switch w := o.obj.(type) {
	case *corev1.Secret:
		checkSecret(o, w, rep)
	case *appsv1.Deployment:
		checkSelector(o, "spec.selector", w.Spec.Selector, w.Spec.Template.Labels, rep)
	case *appsv1.StatefulSet:
		checkSelector(o, "spec.selector", w.Spec.Selector, w.Spec.Template.Labels, rep)
		if w.Spec.ServiceName == "" {
			rep.add(o, "spec.serviceName is empty: a StatefulSet needs its headless Service")
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		if w.Spec.MinReplicas != nil && *w.Spec.MinReplicas > w.Spec.MaxReplicas {
			rep.add(o, "spec.minReplicas %d > spec.maxReplicas %d", *w.Spec.MinReplicas, w.Spec.MaxReplicas)
		}
	case *policyv1.PodDisruptionBudget:
		if (w.Spec.MinAvailable == nil) == (w.Spec.MaxUnavailable == nil) {
			rep.add(o, "exactly one of spec.minAvailable and spec.maxUnavailable must be set")
		}
	}
}

func checkSelector(o *object, field string, sel *metav1.LabelSelector, podLabels map[string]string, rep *report) {
	if sel == nil {
		rep.add(o, "%s is required", field)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		rep.add(o, "%s: %v", field, err)
		return
	}
	if s.Empty() || !s.Matches(labels.Set(podLabels)) {
		rep.add(o, "%s does not match the pod template's labels", field)
	}
}

func checkPodSpec(o *object, spec *corev1.PodSpec, longLived bool, rep *report) {
	type ctr struct {
		field string
		c     *corev1.Container
		init  bool
	}
	var all []ctr
	for i := range spec.InitContainers {
		all = append(all, ctr{fmt.Sprintf("initContainers[%s]", spec.InitContainers[i].Name), &spec.InitContainers[i], true})
	}
	for i := range spec.Containers {
		all = append(all, ctr{fmt.Sprintf("containers[%s]", spec.Containers[i].Name), &spec.Containers[i], false})
	}
	if len(spec.Containers) == 0 {
		rep.add(o, "pod template has no containers")
	}

	podSC := spec.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}

	for _, x := range all {
		c, field := x.c, x.field

		// Image: named, and pinned to a tag or a digest other than latest.
		img := c.Image
		if img == "" {
			rep.add(o, "%s: image is empty", field)
		} else if !strings.Contains(img, "@") {
			last := img[strings.LastIndex(img, "/")+1:]
			if !strings.Contains(last, ":") || strings.HasSuffix(last, ":latest") {
				rep.add(o, "%s: image %q is not pinned to a tag (or is :latest)", field, img)
			}
		}

		// Resources: requests and limits for cpu and memory, requests <= limits.
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[res]
			lim, hasLim := c.Resources.Limits[res]
			if !hasReq {
				rep.add(o, "%s: resources.requests.%s is missing", field, res)
			}
			if !hasLim {
				rep.add(o, "%s: resources.limits.%s is missing", field, res)
			}
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				rep.add(o, "%s: resources.requests.%s %s exceeds limits %s", field, res, req.String(), lim.String())
			}
		}

		// Security: non-root, read-only root filesystem, no escalation, no
		// capabilities, the runtime's seccomp profile.
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := podSC.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			rep.add(o, "%s: securityContext.runAsNonRoot must be true (container or pod)", field)
		}
		user := podSC.RunAsUser
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		if user != nil && *user == 0 {
			rep.add(o, "%s: securityContext.runAsUser is 0 (root)", field)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			rep.add(o, "%s: securityContext.readOnlyRootFilesystem must be true", field)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			rep.add(o, "%s: securityContext.allowPrivilegeEscalation must be false", field)
		}
		if sc.Privileged != nil && *sc.Privileged {
			rep.add(o, "%s: securityContext.privileged must not be true", field)
		}
		dropsAll := false
		if sc.Capabilities != nil {
			for _, d := range sc.Capabilities.Drop {
				if d == "ALL" {
					dropsAll = true
				}
			}
		}
		if !dropsAll {
			rep.add(o, "%s: securityContext.capabilities.drop must contain ALL", field)
		}
		seccomp := podSC.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
			rep.add(o, "%s: seccompProfile must be RuntimeDefault or Localhost (container or pod)", field)
		}

		// Probes: long-lived containers say when they are ready and alive;
		// named probe ports must be declared.
		if longLived && !x.init {
			if c.ReadinessProbe == nil {
				rep.add(o, "%s: readinessProbe is missing", field)
			}
			if c.LivenessProbe == nil {
				rep.add(o, "%s: livenessProbe is missing", field)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if p.Name != "" {
				ports[p.Name] = true
			}
		}
		for pname, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
			if p == nil {
				continue
			}
			if p.HTTPGet != nil && p.HTTPGet.Port.String() != "" && p.HTTPGet.Port.IntValue() == 0 && !ports[p.HTTPGet.Port.String()] {
				rep.add(o, "%s: %s.httpGet.port %q names no container port", field, pname, p.HTTPGet.Port.String())
			}
			if p.TCPSocket != nil && p.TCPSocket.Port.IntValue() == 0 && !ports[p.TCPSocket.Port.String()] {
				rep.add(o, "%s: %s.tcpSocket.port %q names no container port", field, pname, p.TCPSocket.Port.String())
			}
		}

		// Literal environment values are no place for a placeholder either.
		for _, e := range c.Env {
			if p := placeholderIn(e.Value); p != "" {
				rep.add(o, "%s: env %s holds a placeholder (%q)", field, e.Name, p)
			}
		}

		// Volume mounts name declared volumes.
		vols := map[string]bool{}
		for _, v := range spec.Volumes {
			vols[v.Name] = true
		}
		if w, ok := o.obj.(*appsv1.StatefulSet); ok {
			for _, t := range w.Spec.VolumeClaimTemplates {
				vols[t.Name] = true
			}
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				rep.add(o, "%s: volumeMount %q names no volume", field, m.Name)
			}
		}
	}
}

// externalSecrets: the Secrets come from outside the rendering (a secret
// manager in the cluster), so a reference to a missing one is expected.
var externalSecrets bool

// checkReferences checks what objects say about each other.
func checkReferences(objs []*object, rep *report) {
	type key struct{ kind, ns, name string }
	have := map[key]*object{}
	type workload struct {
		o      *object
		labels map[string]string
	}
	var workloads []workload
	for _, o := range objs {
		if o.obj == nil {
			continue
		}
		have[key{o.kind, o.namespace, o.name}] = o
		if tpl, _ := podTemplate(o.obj); tpl != nil {
			workloads = append(workloads, workload{o, tpl.Labels})
		}
	}
	exists := func(kind, ns, name string) bool { _, ok := have[key{kind, ns, name}]; return ok }
	matchesWorkload := func(ns string, sel labels.Selector) bool {
		for _, w := range workloads {
			if w.o.namespace == ns && sel.Matches(labels.Set(w.labels)) {
				return true
			}
		}
		return false
	}

	for _, o := range objs {
		if o.obj == nil {
			continue
		}
		ns := o.namespace
		if tpl, _ := podTemplate(o.obj); tpl != nil {
			spec := &tpl.Spec
			need := func(kind, name, where string, optional *bool) {
				if (optional != nil && *optional) || (kind == "Secret" && externalSecrets) {
					return
				}
				if !exists(kind, ns, name) {
					rep.add(o, "%s refers to %s %q, which is not in the input", where, kind, name)
				}
			}
			if sa := spec.ServiceAccountName; sa != "" && sa != "default" {
				need("ServiceAccount", sa, "serviceAccountName", nil)
			}
			for _, v := range spec.Volumes {
				if v.ConfigMap != nil {
					need("ConfigMap", v.ConfigMap.Name, "volume "+v.Name, v.ConfigMap.Optional)
				}
				if v.Secret != nil {
					need("Secret", v.Secret.SecretName, "volume "+v.Name, v.Secret.Optional)
				}
				if v.Projected != nil {
					for _, s := range v.Projected.Sources {
						if s.ConfigMap != nil {
							need("ConfigMap", s.ConfigMap.Name, "volume "+v.Name, s.ConfigMap.Optional)
						}
						if s.Secret != nil {
							need("Secret", s.Secret.Name, "volume "+v.Name, s.Secret.Optional)
						}
					}
				}
			}
			cs := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
			for _, c := range cs {
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef != nil {
						need("ConfigMap", ef.ConfigMapRef.Name, "container "+c.Name+" envFrom", ef.ConfigMapRef.Optional)
					}
					if ef.SecretRef != nil {
						need("Secret", ef.SecretRef.Name, "container "+c.Name+" envFrom", ef.SecretRef.Optional)
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
						need("ConfigMap", r.Name, "container "+c.Name+" env "+e.Name, r.Optional)
					}
					if r := e.ValueFrom.SecretKeyRef; r != nil {
						need("Secret", r.Name, "container "+c.Name+" env "+e.Name, r.Optional)
					}
				}
			}
		}

		switch w := o.obj.(type) {
		case *appsv1.StatefulSet:
			if w.Spec.ServiceName != "" {
				svc, ok := have[key{"Service", ns, w.Spec.ServiceName}]
				if !ok {
					rep.add(o, "spec.serviceName %q: no such Service in the input", w.Spec.ServiceName)
				} else if s := svc.obj.(*corev1.Service); s.Spec.ClusterIP != corev1.ClusterIPNone {
					rep.add(o, "spec.serviceName %q is not a headless Service (clusterIP: None)", w.Spec.ServiceName)
				}
			}
		case *corev1.Service:
			if len(w.Spec.Selector) > 0 && !matchesWorkload(ns, labels.SelectorFromSet(w.Spec.Selector)) {
				rep.add(o, "spec.selector %v matches no pod template in the input", w.Spec.Selector)
			}
		case *policyv1.PodDisruptionBudget:
			if w.Spec.Selector == nil {
				rep.add(o, "spec.selector is required")
			} else if s, err := metav1.LabelSelectorAsSelector(w.Spec.Selector); err != nil {
				rep.add(o, "spec.selector: %v", err)
			} else if !matchesWorkload(ns, s) {
				rep.add(o, "spec.selector matches no pod template in the input")
			}
		case *networkingv1.NetworkPolicy:
			if s, err := metav1.LabelSelectorAsSelector(&w.Spec.PodSelector); err != nil {
				rep.add(o, "spec.podSelector: %v", err)
			} else if !s.Empty() && !matchesWorkload(ns, s) {
				rep.add(o, "spec.podSelector matches no pod template in the input")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := w.Spec.ScaleTargetRef
			if !exists(ref.Kind, ns, ref.Name) {
				rep.add(o, "spec.scaleTargetRef %s %q is not in the input", ref.Kind, ref.Name)
			}
		}
	}
}
