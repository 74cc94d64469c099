// scc-check runs pvc-backup's mover pods through OpenShift's own SecurityContextConstraints code
// (github.com/openshift/apiserver-library-go: sccmatching and the sccadmission plugin), with
// pvc-backup's SCC and OpenShift's stock ones, and checks the verdicts pvc-backup relies on.
//
// It is test code, run by tests/scc/run.sh, which passes it what the pvc-backup binary prints
// and the templates of deploy/openshift:
//
//	scc-check --manifests FILE --stock FILE [--param NAME=VALUE]... \
//	    --root NAME=FILE... --unprivileged NAME=FILE...
//
// --manifests: `pvc-backup manifests --openshift` (the SCC pvc-backup-mover, the ClusterRole
// backuper and its RoleBinding). --stock: OpenShift's stock SCCs (openshift-sccs.yaml).
// --root/--unprivileged: a Job (what `pvc-backup backup --dry-run=client` prints), an OpenShift
// Template of one, or a Deployment (the operator's), whose pod must get the root mover's verdicts
// or those of a pod without privileges (restricted-v2 admits it and admission picks it).
// A template is processed as `oc process` does, with the --param values.
//
// It prints one line per verdict and per check, and exits 1 when a check fails.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccadmission"
	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccmatching"
	sccsort "github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/util/sort"
	secfake "github.com/openshift/client-go/security/clientset/versioned/fake"
	secinformers "github.com/openshift/client-go/security/informers/externalversions"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	kapi "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	rbacauthorizer "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac"
	"sigs.k8s.io/yaml"
)

const (
	namespace = "shop"
	moverSCC  = "pvc-backup-mover"
)

// The namespace as OpenShift's namespace controller annotates a new project: a UID range, an MCS
// level and supplemental groups of its own. Restricted SCCs take their values from these.
var namespaceAnnotations = map[string]string{
	securityv1.UIDRangeAnnotation:           "1000720000/10000",
	securityv1.SupplementalGroupsAnnotation: "1000720000/10000",
	securityv1.MCSAnnotation:                "s0:c27,c14",
}

// The Job controller creates a Job's pods; with OpenShift's controller manager it does so as its
// own service account, which is an authenticated user (and so may use restricted-v2).
var jobController = &user.DefaultInfo{
	Name:   "system:serviceaccount:kube-system:job-controller",
	Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
}

// The SCCs every pod is judged against one by one.
var matrixSCCs = []string{moverSCC, "restricted-v2", "anyuid", "privileged"}

type pairs []string

func (p *pairs) String() string     { return strings.Join(*p, ",") }
func (p *pairs) Set(v string) error { *p = append(*p, v); return nil }

type podCase struct {
	name string
	root bool
	pod  *kapi.Pod
}

type verdict struct {
	admitted bool
	reason   string
}

var failed int

func check(ok bool, format string, args ...any) {
	if ok {
		fmt.Printf("check ok:   "+format+"\n", args...)
	} else {
		failed++
		fmt.Printf("check FAIL: "+format+"\n", args...)
	}
}

func main() {
	var manifests, stock string
	var roots, unprivs, params pairs
	flag.StringVar(&manifests, "manifests", "", "output of `pvc-backup manifests --openshift`")
	flag.StringVar(&stock, "stock", "", "OpenShift's stock SCCs and their RBAC")
	flag.Var(&roots, "root", "NAME=FILE: a Job or Template whose pod is the root mover")
	flag.Var(&unprivs, "unprivileged", "NAME=FILE: a Job, Template or Deployment whose pod runs without privileges")
	flag.Var(&params, "param", "NAME=VALUE: a template parameter, as `oc process -p`")
	flag.Parse()
	if manifests == "" || stock == "" || len(roots) == 0 {
		fmt.Fprintln(os.Stderr, "usage: scc-check --manifests FILE --stock FILE [--param N=V]... --root NAME=FILE... [--unprivileged NAME=FILE]...")
		os.Exit(2)
	}
	if err := run(manifests, stock, roots, unprivs, params); err != nil {
		fmt.Fprintln(os.Stderr, "scc-check:", err)
		os.Exit(1)
	}
	if failed > 0 {
		fmt.Printf("scc-check: %d check(s) failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("scc-check: all checks passed")
}

// objects holds what the input files define.
type objects struct {
	sccs                []*securityv1.SecurityContextConstraints
	clusterRoles        []*rbacv1.ClusterRole
	clusterRoleBindings []*rbacv1.ClusterRoleBinding
	roleBindings        []*rbacv1.RoleBinding
}

func run(manifestsFile, stockFile string, roots, unprivs, params pairs) error {
	var objs objects
	for _, f := range []string{stockFile, manifestsFile} {
		if err := objs.load(f); err != nil {
			return err
		}
	}
	ours := objs.scc(moverSCC)
	if ours == nil {
		return fmt.Errorf("%s defines no SecurityContextConstraints %s", manifestsFile, moverSCC)
	}
	for _, name := range matrixSCCs {
		if objs.scc(name) == nil {
			return fmt.Errorf("no SecurityContextConstraints %s in %s", name, stockFile)
		}
	}
	// Each stock SCC comes with a ClusterRole allowing its use, system:openshift:scc:NAME.
	for _, s := range objs.sccs {
		if s.Name == moverSCC {
			continue
		}
		objs.clusterRoles = append(objs.clusterRoles, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "system:openshift:scc:" + s.Name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"security.openshift.io"}, Resources: []string{"securitycontextconstraints"},
				ResourceNames: []string{s.Name}, Verbs: []string{"use"}}},
		})
	}
	// The RoleBinding of the manifests is applied in the backup namespace.
	for _, rb := range objs.roleBindings {
		rb.Namespace = namespace
	}

	paramValues := map[string]string{}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("--param %q: want NAME=VALUE", p)
		}
		paramValues[k] = v
	}
	var cases []podCase
	for _, set := range []struct {
		list pairs
		root bool
	}{{roots, true}, {unprivs, false}} {
		for _, p := range set.list {
			name, file, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("%q: want NAME=FILE", p)
			}
			pod, err := loadPod(file, paramValues)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			cases = append(cases, podCase{name: name, root: set.root, pod: pod})
		}
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Annotations: namespaceAnnotations}}
	width := 0
	for _, c := range cases {
		width = max(width, len(c.name))
	}

	// 1. Each pod against each SCC on its own: sccmatching's provider for the SCC, as admission
	// builds it for this namespace, assigns and validates the pod's security context.
	fmt.Printf("== each pod against each SCC (sccmatching), namespace %s (uid-range %s, mcs %s)\n",
		namespace, namespaceAnnotations[securityv1.UIDRangeAnnotation], namespaceAnnotations[securityv1.MCSAnnotation])
	verdicts := map[string]map[string]verdict{}
	for _, c := range cases {
		verdicts[c.name] = map[string]verdict{}
		for _, sccName := range matrixSCCs {
			v := judge(ns, objs.scc(sccName), c.pod)
			verdicts[c.name][sccName] = v
			word := "refused "
			if v.admitted {
				word = "admitted"
			}
			fmt.Printf("verdict: pod=%-*s scc=%-16s %s  %s\n", width, c.name, sccName, word, v.reason)
		}
	}

	// 2. The admission plugin itself, with the SCCs a user and the pod's service account may use
	// decided by the RBAC authorizer from the objects above.
	scenarios := []scenario{
		{name: "as installed", desc: "stock SCCs and RBAC, plus pvc-backup's SCC, ClusterRole backuper and its RoleBinding"},
		{name: "anyuid+privileged granted", desc: "as installed, and the service account may also use anyuid and privileged", grants: []string{"anyuid", "privileged"}},
		{name: "anyuid+privileged granted, no required-scc", desc: "the same, with the pod's openshift.io/required-scc annotation removed (OpenShift before 4.14 ignores it): the plugin's ordering alone decides", grants: []string{"anyuid", "privileged"}, dropRequired: true},
	}
	picks := map[string]map[string]string{}
	for _, sc := range scenarios {
		fmt.Printf("== admission (sccadmission, create as %s): %s: %s\n", jobController.Name, sc.name, sc.desc)
		plugin, authz, err := newPlugin(ns, &objs, sc.grants)
		if err != nil {
			return err
		}
		printOrder(objs.sccs, authz)
		picks[sc.name] = map[string]string{}
		for _, c := range cases {
			pod := c.pod.DeepCopy()
			if sc.dropRequired {
				if _, ok := pod.Annotations[securityv1.RequiredSCCAnnotation]; !ok {
					continue // nothing to drop: the same as the first scenario
				}
				delete(pod.Annotations, securityv1.RequiredSCCAnnotation)
			}
			chosen, reason, err := admit(plugin, pod)
			if err != nil {
				fmt.Printf("admission: pod=%-*s refused: %v\n", width, c.name, err)
				picks[sc.name][c.name] = ""
				continue
			}
			picks[sc.name][c.name] = chosen
			fmt.Printf("admission: pod=%-*s admitted under %s (%s)\n", width, c.name, chosen, reason)
		}
	}

	// 3. What pvc-backup relies on.
	fmt.Println("== checks")
	var cliRoot string
	for _, c := range cases {
		if c.root {
			cliRoot = c.name
			break
		}
	}
	for _, c := range cases {
		v := verdicts[c.name]
		if c.root {
			check(v[moverSCC].admitted, "%s: admitted by %s", c.name, moverSCC)
			check(!v["restricted-v2"].admitted, "%s: refused by restricted-v2", c.name)
			for _, sc := range scenarios {
				check(picks[sc.name][c.name] == moverSCC, "%s: admission (%s) picks %s (picked: %s)",
					c.name, sc.name, moverSCC, orNone(picks[sc.name][c.name]))
			}
			if c.name != cliRoot {
				same := true
				for _, s := range matrixSCCs {
					same = same && v[s].admitted == verdicts[cliRoot][s].admitted
				}
				for _, sc := range scenarios {
					same = same && picks[sc.name][c.name] == picks[sc.name][cliRoot]
				}
				check(same, "%s: the same verdicts and picks as %s", c.name, cliRoot)
			}
		} else {
			check(v["restricted-v2"].admitted, "%s: admitted by restricted-v2", c.name)
			pick := picks[scenarios[0].name][c.name]
			check(pick == "restricted-v2", "%s: admission (%s) picks restricted-v2 (picked: %s)", c.name, scenarios[0].name, orNone(pick))
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none, refused"
	}
	return s
}

func (o *objects) scc(name string) *securityv1.SecurityContextConstraints {
	for _, s := range o.sccs {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// load reads the SCCs and RBAC objects of a multi-document YAML or JSON file.
func (o *objects) load(file string) error {
	docs, err := documents(file)
	if err != nil {
		return err
	}
	for _, d := range docs {
		var head struct{ Kind string }
		if err := json.Unmarshal(d, &head); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		var target any
		switch head.Kind {
		case "SecurityContextConstraints":
			s := &securityv1.SecurityContextConstraints{}
			o.sccs, target = append(o.sccs, s), s
		case "ClusterRole":
			r := &rbacv1.ClusterRole{}
			o.clusterRoles, target = append(o.clusterRoles, r), r
		case "ClusterRoleBinding":
			b := &rbacv1.ClusterRoleBinding{}
			o.clusterRoleBindings, target = append(o.clusterRoleBindings, b), b
		case "RoleBinding":
			b := &rbacv1.RoleBinding{}
			o.roleBindings, target = append(o.roleBindings, b), b
		default:
			continue
		}
		if err := strictJSON(d, target); err != nil {
			return fmt.Errorf("%s: %s: %w", file, head.Kind, err)
		}
	}
	return nil
}

func strictJSON(data []byte, target any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(target)
}

// documents splits a YAML stream (or one JSON document, or a JSON List) into JSON documents.
func documents(file string) ([][]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		j, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		var list struct {
			Kind  string
			Items []json.RawMessage
		}
		if json.Unmarshal(j, &list) == nil && list.Kind == "List" {
			for _, item := range list.Items {
				out = append(out, item)
			}
			continue
		}
		out = append(out, j)
	}
	return out, nil
}

// loadPod returns the pod that the Job in file (or the Job a Template in file makes) creates,
// defaulted as the API server defaults it and in the API server's internal form, which is what
// admission plugins see.
func loadPod(file string, params map[string]string) (*kapi.Pod, error) {
	docs, err := documents(file)
	if err != nil {
		return nil, err
	}
	// The pod template of the first Job or Deployment (the operator's).
	var template *corev1.PodTemplateSpec
	var owner string
	for _, d := range docs {
		var head struct{ Kind string }
		_ = json.Unmarshal(d, &head)
		if head.Kind == "Template" {
			d, err = processTemplate(d, params)
			if err != nil {
				return nil, err
			}
			_ = json.Unmarshal(d, &head)
		}
		if head.Kind == "Job" {
			job := &batchv1.Job{}
			if err := strictJSON(d, job); err != nil {
				return nil, fmt.Errorf("Job: %w", err)
			}
			template, owner = &job.Spec.Template, job.Name
			break
		}
		if head.Kind == "Deployment" {
			deployment := &appsv1.Deployment{}
			if err := strictJSON(d, deployment); err != nil {
				return nil, fmt.Errorf("Deployment: %w", err)
			}
			template, owner = &deployment.Spec.Template, deployment.Name
			break
		}
	}
	if template == nil {
		return nil, fmt.Errorf("no Job or Deployment in it")
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: *template.ObjectMeta.DeepCopy(),
		Spec:       *template.Spec.DeepCopy(),
	}
	pod.Namespace = namespace
	pod.GenerateName = owner + "-"
	legacyscheme.Scheme.Default(pod)
	internal := &kapi.Pod{}
	if err := legacyscheme.Scheme.Convert(pod, internal, nil); err != nil {
		return nil, err
	}
	return internal, nil
}

var paramRef = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)\}`)

// processTemplate does what `oc process` does to a template whose objects use ${NAME} in strings:
// each parameter gets the value given, else its default, else (generate: expression) a value
// made here; a required parameter without a value is an error. It returns the first object.
func processTemplate(doc []byte, given map[string]string) ([]byte, error) {
	var tmpl struct {
		Metadata   struct{ Name string }
		Objects    []any
		Parameters []struct {
			Name     string
			Value    string
			Generate string
			From     string
			Required bool
		}
	}
	if err := json.Unmarshal(doc, &tmpl); err != nil {
		return nil, err
	}
	values := map[string]string{}
	for _, p := range tmpl.Parameters {
		v, ok := given[p.Name]
		switch {
		case ok:
		case p.Value != "":
			v = p.Value
		case p.Generate == "expression":
			v = "x7k2q" // stands for a value generated from p.From ([a-z0-9]{5} in our templates)
		}
		if p.Required && v == "" {
			return nil, fmt.Errorf("template %s: parameter %s is required", tmpl.Metadata.Name, p.Name)
		}
		values[p.Name] = v
	}
	if len(tmpl.Objects) == 0 {
		return nil, fmt.Errorf("template %s has no objects", tmpl.Metadata.Name)
	}
	var subst func(any) any
	subst = func(x any) any {
		switch t := x.(type) {
		case string:
			return paramRef.ReplaceAllStringFunc(t, func(m string) string {
				if v, ok := values[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		case map[string]any:
			for k, v := range t {
				t[k] = subst(v)
			}
		case []any:
			for i, v := range t {
				t[i] = subst(v)
			}
		}
		return x
	}
	return json.Marshal(subst(tmpl.Objects[0]))
}

// judge runs one pod against one SCC with sccmatching, as the admission plugin does for each SCC
// it tries: the provider assigns the pod's and containers' security contexts and validates them.
func judge(ns *corev1.Namespace, scc *securityv1.SecurityContextConstraints, pod *kapi.Pod) verdict {
	provider, err := sccmatching.CreateProviderFromConstraint(ns, scc)
	if err != nil {
		return verdict{false, "no provider: " + err.Error()}
	}
	podCopy := pod.DeepCopy()
	if errs := sccmatching.AssignSecurityContext(provider, podCopy, field.NewPath("pod")); len(errs) > 0 {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return verdict{false, strings.Join(msgs, "; ")}
	}
	changes := diff(external(pod).Spec, external(podCopy).Spec)
	if len(changes) == 0 {
		return verdict{true, "as it is"}
	}
	return verdict{true, "after the SCC sets " + strings.Join(changes, ", ")}
}

func external(pod *kapi.Pod) *corev1.Pod {
	out := &corev1.Pod{}
	if err := legacyscheme.Scheme.Convert(pod, out, nil); err != nil {
		panic(err)
	}
	return out
}

// diff lists the fields of b (as JSON paths under spec) that differ from a.
func diff(a, b corev1.PodSpec) []string {
	var am, bm any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &am)
	_ = json.Unmarshal(jb, &bm)
	var out []string
	var walk func(path string, x, y any)
	walk = func(path string, x, y any) {
		xm, xok := x.(map[string]any)
		ym, yok := y.(map[string]any)
		if xok && yok {
			keys := map[string]bool{}
			for k := range xm {
				keys[k] = true
			}
			for k := range ym {
				keys[k] = true
			}
			var sorted []string
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				walk(path+"."+k, xm[k], ym[k])
			}
			return
		}
		xl, xok := x.([]any)
		yl, yok := y.([]any)
		if xok && yok && len(xl) == len(yl) {
			for i := range xl {
				walk(fmt.Sprintf("%s[%d]", path, i), xl[i], yl[i])
			}
			return
		}
		if !reflect.DeepEqual(x, y) {
			v, _ := json.Marshal(y)
			out = append(out, fmt.Sprintf("%s=%s", path, v))
		}
	}
	walk("spec", am, bm)
	return out
}

type scenario struct {
	name, desc   string
	grants       []string // SCCs the service account may also use, through RoleBindings
	dropRequired bool
}

// newPlugin builds OpenShift's SCC admission plugin as the API server does: informers for the SCCs
// and namespaces, and the RBAC authorizer over the ClusterRoles and bindings.
func newPlugin(ns *corev1.Namespace, objs *objects, grants []string) (admission.Interface, authorizer.Authorizer, error) {
	// Created through the client: objects handed to the fake clientset's constructor are filed
	// under a resource name guessed from the kind ("securitycontextconstraintses").
	secClient := secfake.NewSimpleClientset()
	for _, s := range objs.sccs {
		if _, err := secClient.SecurityV1().SecurityContextConstraints().Create(context.Background(), s.DeepCopy(), metav1.CreateOptions{}); err != nil {
			return nil, nil, err
		}
	}
	secInformers := secinformers.NewSharedInformerFactory(secClient, 0)
	kubeInformers := informers.NewSharedInformerFactory(kubefake.NewSimpleClientset(ns.DeepCopy()), 0)

	index := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	roles, roleBindings, clusterRoles, clusterRoleBindings := index(), index(), index(), index()
	for _, r := range objs.clusterRoles {
		_ = clusterRoles.Add(r)
	}
	for _, b := range objs.clusterRoleBindings {
		_ = clusterRoleBindings.Add(b)
	}
	for _, b := range objs.roleBindings {
		_ = roleBindings.Add(b)
	}
	for _, g := range grants {
		// What `oc adm policy add-scc-to-user NAME -z pvc-backup-deployer -n shop` grants.
		_ = roleBindings.Add(&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "scc-" + g, Namespace: namespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:openshift:scc:" + g},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "pvc-backup-deployer", Namespace: namespace}},
		})
	}
	authz := rbacauthorizer.New(
		&rbacauthorizer.RoleGetter{Lister: rbaclisters.NewRoleLister(roles)},
		&rbacauthorizer.RoleBindingLister{Lister: rbaclisters.NewRoleBindingLister(roleBindings)},
		&rbacauthorizer.ClusterRoleGetter{Lister: rbaclisters.NewClusterRoleLister(clusterRoles)},
		&rbacauthorizer.ClusterRoleBindingLister{Lister: rbaclisters.NewClusterRoleBindingLister(clusterRoleBindings)},
	)

	plugin := sccadmission.NewConstraint()
	plugin.SetSecurityInformers(secInformers.Security().V1().SecurityContextConstraints())
	plugin.SetExternalKubeInformerFactory(kubeInformers)
	plugin.SetAuthorizer(authz)
	if err := plugin.ValidateInitialization(); err != nil {
		return nil, nil, err
	}
	stop := make(chan struct{}) // the informers run until the program ends
	secInformers.Start(stop)
	kubeInformers.Start(stop)
	secInformers.WaitForCacheSync(stop)
	kubeInformers.WaitForCacheSync(stop)
	return plugin, authz, nil
}

// printOrder shows the order in which the plugin tries the SCCs (its ByPriority sort) and who may
// use each: the user creating the pod, the pod's service account, or neither.
func printOrder(sccs []*securityv1.SecurityContextConstraints, authz authorizer.Authorizer) {
	sorted := append([]*securityv1.SecurityContextConstraints(nil), sccs...)
	sort.Sort(sccsort.ByPriority(sorted))
	sa := serviceaccount.UserInfo(namespace, "pvc-backup-deployer", "")
	var parts []string
	for _, s := range sorted {
		var who []string
		if sccmatching.ConstraintAppliesTo(context.Background(), s.Name, s.Users, s.Groups, jobController, namespace, authz) {
			who = append(who, "job-controller")
		}
		if sccmatching.ConstraintAppliesTo(context.Background(), s.Name, s.Users, s.Groups, sa, namespace, authz) {
			who = append(who, "pvc-backup-deployer")
		}
		if len(who) == 0 {
			who = []string{"-"}
		}
		parts = append(parts, fmt.Sprintf("%s[%s]", s.Name, strings.Join(who, ",")))
	}
	fmt.Printf("order tried [usable by]: %s\n", strings.Join(parts, " "))
}

// recorder keeps the audit annotations the plugin adds, which say why it chose an SCC.
type recorder struct {
	admission.Attributes
	notes map[string]string
}

func (r *recorder) AddAnnotation(k, v string) error { r.notes[k] = v; return nil }

// admit creates the pod through the plugin: Admit (which may set defaults from the chosen SCC),
// then Validate on the result, as the API server's admission chain does. It returns the SCC the
// pod is admitted under (its openshift.io/scc annotation) and the plugin's stated reason.
func admit(plugin admission.Interface, pod *kapi.Pod) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	attrs := func() *recorder {
		return &recorder{
			Attributes: admission.NewAttributesRecord(pod, nil, kapi.Kind("Pod").WithVersion(""), namespace, pod.Name,
				kapi.Resource("pods").WithVersion(""), "", admission.Create, &metav1.CreateOptions{}, false, jobController),
			notes: map[string]string{},
		}
	}
	a := attrs()
	if err := plugin.(admission.MutationInterface).Admit(ctx, a, nil); err != nil {
		return "", "", err
	}
	if err := plugin.(admission.ValidationInterface).Validate(ctx, attrs(), nil); err != nil {
		return "", "", fmt.Errorf("validation after admit: %w", err)
	}
	reason := a.notes["securitycontextconstraints.admission.openshift.io/reason"]
	var tooRestrictive []string
	for k := range a.notes {
		if s, ok := strings.CutPrefix(k, "securitycontextconstraints.admission.openshift.io/too-restrictive-"); ok {
			tooRestrictive = append(tooRestrictive, s)
		}
	}
	sort.Strings(tooRestrictive)
	if len(tooRestrictive) > 0 {
		reason += "; too restrictive: " + strings.Join(tooRestrictive, ",")
	}
	if d := a.notes["securityserviceconstraints.admission.openshift.io/denied"]; d != "" {
		reason += "; not usable: " + d
	}
	return pod.Annotations[securityv1.ValidatedSCCAnnotation], reason, nil
}
