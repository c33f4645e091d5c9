package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// child names a child object the operator must create.
type child struct {
	name string
	obj  client.Object
}

func brokerChildren(name string) []child {
	return []child{
		{name + "-config", &corev1.ConfigMap{}},
		{name + "-policy", &corev1.ConfigMap{}},
		{name + "-headless", &corev1.Service{}},
		{name, &corev1.Service{}},
		{name, &appsv1.Deployment{}},
		{name, &policyv1.PodDisruptionBudget{}},
	}
}

func natsChildren(name string) []child {
	return []child{
		{name + "-nats-config", &corev1.ConfigMap{}},
		{name + "-nats-headless", &corev1.Service{}},
		{name + "-nats", &corev1.Service{}},
		{name + "-nats", &appsv1.StatefulSet{}},
		{name + "-nats-auth", &corev1.Secret{}},
		{name + "-nats", &networkingv1.NetworkPolicy{}},
	}
}

func newCluster(ns, name string, replicas int32, managed bool) *v1.CometdCluster {
	cc := &v1.CometdCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1.CometdClusterSpec{Replicas: ptr.To(replicas)},
	}
	if managed {
		cc.Spec.NATS = &v1.NATSSpec{Managed: &v1.ManagedNATS{}}
	} else if replicas > 1 {
		cc.Spec.NATS = &v1.NATSSpec{URL: "nats://nats.infra:4222"}
	}
	return cc
}

func create(t *testing.T, cc *v1.CometdCluster) *v1.CometdCluster {
	t.Helper()
	if err := env.Client.Create(context.Background(), cc); err != nil {
		t.Fatalf("create CometdCluster: %v", err)
	}
	return cc
}

// get reads obj by namespace and name, reporting whether it exists.
func get(t *testing.T, ns, name string, obj client.Object) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, name, err)
	}
	return true
}

func waitForChildren(t *testing.T, cc *v1.CometdCluster, children []child) {
	t.Helper()
	for _, c := range children {
		testutil.Eventually(t, waitTimeout, fmt.Sprintf("%T %s", c.obj, c.name), func(context.Context) (bool, string) {
			return get(t, cc.Namespace, c.name, c.obj), "not created"
		})
	}
}

func getDeployment(t *testing.T, cc *v1.CometdCluster) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if !get(t, cc.Namespace, cc.Name, d) {
		t.Fatalf("deployment %s/%s does not exist", cc.Namespace, cc.Name)
	}
	return d
}

// updateCluster applies mut to the latest version of the cluster, retrying on conflicts.
func updateCluster(t *testing.T, cc *v1.CometdCluster, mut func(*v1.CometdCluster)) {
	t.Helper()
	for range 10 {
		cur := &v1.CometdCluster{}
		if !get(t, cc.Namespace, cc.Name, cur) {
			t.Fatal("cluster vanished")
		}
		mut(cur)
		err := env.Client.Update(context.Background(), cur)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("update cluster: %v", err)
		}
	}
	t.Fatal("update cluster: too many conflicts")
}

func TestCreateMakesEveryChildWithOwnerReferences(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 3, true))
	all := append(natsChildren("chat"), brokerChildren("chat")...)
	waitForChildren(t, cc, all)
	for _, c := range all {
		get(t, ns, c.name, c.obj)
		refs := c.obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != cc.UID || refs[0].Kind != "CometdCluster" ||
			!ptr.Deref(refs[0].Controller, false) || !ptr.Deref(refs[0].BlockOwnerDeletion, false) {
			t.Errorf("%T %s owner references = %+v, want the CometdCluster as controller", c.obj, c.name, refs)
		}
	}
	d := getDeployment(t, cc)
	if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Image != testBrokerImage {
		t.Errorf("deployment replicas %d image %s", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
	}
	cm := &corev1.ConfigMap{}
	get(t, ns, "chat-config", cm)
	if !strings.Contains(cm.Data["broker.yaml"], "url: nats://chat-nats."+ns+".svc:4222") {
		t.Errorf("broker.yaml does not point at the managed NATS:\n%s", cm.Data["broker.yaml"])
	}
	// One Event names every created child.
	testutil.Eventually(t, waitTimeout, "the creation event", func(context.Context) (bool, string) {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var notes []string
		for _, e := range list.Items {
			if e.Reason == "Created" && e.Regarding.UID == cc.UID {
				notes = append(notes, e.Note)
			}
		}
		named := 0
		for _, c := range all {
			for _, n := range notes {
				if strings.Contains(n, fmt.Sprintf("%s %s,", kindName(c.obj), c.name)) || strings.HasSuffix(n, fmt.Sprintf("%s %s", kindName(c.obj), c.name)) {
					named++
					break
				}
			}
		}
		// One reconcile creates them all, unless one was interrupted.
		return len(notes) >= 1 && len(notes) < len(all) && named == len(all), fmt.Sprintf("%d Created events naming %d of %d children: %q", len(notes), named, len(all), notes)
	})
}

// kindName is the kind of a child object as events name it.
func kindName(o client.Object) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1.")
}

func TestChangesUpdateChildren(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	hash0 := getDeployment(t, cc).Spec.Template.Annotations[resources.AnnotationConfigHash]
	if hash0 == "" {
		t.Fatal("deployment has no config hash")
	}

	// Replicas: the Deployment follows; the pods are not rolled.
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Replicas = ptr.To[int32](4) })
	testutil.Eventually(t, waitTimeout, "deployment scaled to 4", func(context.Context) (bool, string) {
		d := getDeployment(t, cc)
		return *d.Spec.Replicas == 4, fmt.Sprintf("replicas %d", *d.Spec.Replicas)
	})
	if h := getDeployment(t, cc).Spec.Template.Annotations[resources.AnnotationConfigHash]; h != hash0 {
		t.Errorf("scaling changed the config hash %s -> %s (it would roll every pod)", hash0, h)
	}

	// A broker setting: the ConfigMap changes and the new hash rolls the pods.
	updateCluster(t, cc, func(c *v1.CometdCluster) {
		c.Spec.Broker.Timeout = &metav1.Duration{Duration: 45 * time.Second}
		c.Spec.Broker.Transports = []v1.Transport{v1.TransportWebsocket}
	})
	testutil.Eventually(t, waitTimeout, "new broker.yaml", func(context.Context) (bool, string) {
		cm := &corev1.ConfigMap{}
		get(t, ns, "chat-config", cm)
		y := cm.Data["broker.yaml"]
		return strings.Contains(y, "timeoutMs: 45000") && !strings.Contains(y, "long-polling"), y
	})
	testutil.Eventually(t, waitTimeout, "config hash changed", func(context.Context) (bool, string) {
		h := getDeployment(t, cc).Spec.Template.Annotations[resources.AnnotationConfigHash]
		return h != hash0, "hash still " + h
	})

	// Pod overrides and the service reach their children.
	updateCluster(t, cc, func(c *v1.CometdCluster) {
		c.Spec.Service.Port = 8080
		c.Spec.Pod.NodeSelector = map[string]string{"disk": "ssd"}
	})
	testutil.Eventually(t, waitTimeout, "service port 8080", func(context.Context) (bool, string) {
		svc := &corev1.Service{}
		get(t, ns, "chat", svc)
		return svc.Spec.Ports[0].Port == 8080, fmt.Sprintf("port %d", svc.Spec.Ports[0].Port)
	})
	testutil.Eventually(t, waitTimeout, "node selector", func(context.Context) (bool, string) {
		d := getDeployment(t, cc)
		return d.Spec.Template.Spec.NodeSelector["disk"] == "ssd", fmt.Sprint(d.Spec.Template.Spec.NodeSelector)
	})
	// Removing a field removes it from the child.
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Pod.NodeSelector = nil })
	testutil.Eventually(t, waitTimeout, "node selector removed", func(context.Context) (bool, string) {
		d := getDeployment(t, cc)
		return len(d.Spec.Template.Spec.NodeSelector) == 0, fmt.Sprint(d.Spec.Template.Spec.NodeSelector)
	})
}

// Every child, the managed NATS ones included, comes back when deleted.
func TestDeletedChildrenAreRecreated(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, true))
	all := append(natsChildren("chat"), brokerChildren("chat")...)
	waitForChildren(t, cc, all)
	if len(all) != 12 {
		t.Fatalf("%d children listed, want the 6 managed NATS and 6 broker ones", len(all))
	}
	for _, c := range all {
		get(t, ns, c.name, c.obj)
		oldUID := c.obj.GetUID()
		if err := env.Client.Delete(context.Background(), c.obj); err != nil {
			t.Fatalf("delete %s: %v", c.name, err)
		}
		testutil.Eventually(t, waitTimeout, fmt.Sprintf("%T %s recreated", c.obj, c.name), func(context.Context) (bool, string) {
			fresh := c.obj.DeepCopyObject().(client.Object)
			if !get(t, ns, c.name, fresh) {
				return false, "missing"
			}
			return fresh.GetUID() != oldUID, "still the old object"
		})
	}
}

// A hand edit of a field the operator owns is reverted.
func TestHandEditIsReverted(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 1, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	d := getDeployment(t, cc)
	d.Spec.Template.Spec.Containers[0].Image = "evil:latest"
	if err := env.Client.Update(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, "image restored", func(context.Context) (bool, string) {
		img := getDeployment(t, cc).Spec.Template.Spec.Containers[0].Image
		return img == testBrokerImage, img
	})
}

func TestManagedNATSIsPrunedWhenSwitchingToURL(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, true))
	waitForChildren(t, cc, natsChildren("chat"))
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.NATS = &v1.NATSSpec{URL: "nats://external:4222"} })
	for _, c := range natsChildren("chat") {
		testutil.Eventually(t, waitTimeout, fmt.Sprintf("%T %s deleted", c.obj, c.name), func(context.Context) (bool, string) {
			return !get(t, ns, c.name, c.obj), "still there"
		})
	}
	cm := &corev1.ConfigMap{}
	get(t, ns, "chat-config", cm)
	if !strings.Contains(cm.Data["broker.yaml"], "url: nats://external:4222") {
		t.Errorf("broker.yaml not switched to the external NATS:\n%s", cm.Data["broker.yaml"])
	}
}

// setDeploymentStatus plays the Deployment controller, which envtest does not run.
func setDeploymentStatus(t *testing.T, cc *v1.CometdCluster, mut func(d *appsv1.Deployment)) {
	t.Helper()
	for range 10 {
		d := getDeployment(t, cc)
		mut(d)
		err := env.Client.Status().Update(context.Background(), d)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("update deployment status: %v", err)
		}
	}
	t.Fatal("update deployment status: too many conflicts")
}

func progressing(status corev1.ConditionStatus, reason, msg string) appsv1.DeploymentCondition {
	return appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: status, Reason: reason, Message: msg,
		LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}
}

// waitConditions waits until the cluster's conditions have the wanted status
// and reason, for the current generation.
func waitConditions(t *testing.T, cc *v1.CometdCluster, want map[string]string) *v1.CometdCluster {
	t.Helper()
	return waitConditionsSaying(t, cc, want, "")
}

// waitConditionsSaying is waitConditions where, in addition, some wanted
// condition's message contains says.
func waitConditionsSaying(t *testing.T, cc *v1.CometdCluster, want map[string]string, says string) *v1.CometdCluster {
	t.Helper()
	got := &v1.CometdCluster{}
	testutil.Eventually(t, waitTimeout, fmt.Sprintf("conditions %v", want), func(context.Context) (bool, string) {
		get(t, cc.Namespace, cc.Name, got)
		var have []string
		ok := got.Status.ObservedGeneration == got.Generation
		said := says == ""
		for typ, w := range want {
			c := meta.FindStatusCondition(got.Status.Conditions, typ)
			if c == nil {
				ok = false
				continue
			}
			have = append(have, fmt.Sprintf("%s=%s/%s (%s)", typ, c.Status, c.Reason, c.Message))
			if string(c.Status)+"/"+c.Reason != w || c.ObservedGeneration != got.Generation {
				ok = false
			}
			said = said || strings.Contains(c.Message, says)
		}
		return ok && said, strings.Join(have, "; ")
	})
	return got
}

func TestStatusFollowsTheDeployment(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 3, false))
	waitForChildren(t, cc, brokerChildren("chat"))

	// Nothing ready yet: being created.
	got := waitConditions(t, cc, map[string]string{
		v1.ConditionAvailable:   "False/" + ReasonNoBrokerReady,
		v1.ConditionProgressing: "True/" + ReasonCreating,
		v1.ConditionDegraded:    "False/" + ReasonAsExpected,
	})
	sel := "app.kubernetes.io/instance=chat,app.kubernetes.io/name=cometd-broker"
	if got.Status.Selector != sel || got.Status.Endpoint != "http://chat."+ns+".svc/cometd" {
		t.Errorf("selector %q endpoint %q", got.Status.Selector, got.Status.Endpoint)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAvailable); !strings.Contains(c.Message, sel) {
		t.Errorf("Available message does not tell the user where to look: %q", c.Message)
	}

	// Rolling out: one of three ready.
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 3,
			ReadyReplicas: 1, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, "ReplicaSetUpdated", "progressing")}}
	})
	got = waitConditions(t, cc, map[string]string{
		v1.ConditionAvailable:   "True/" + ReasonBrokersReady,
		v1.ConditionProgressing: "True/" + ReasonScalingUp,
		v1.ConditionDegraded:    "False/" + ReasonAsExpected,
	})
	if got.Status.Replicas != 3 || got.Status.ReadyReplicas != 1 {
		t.Errorf("status replicas %d ready %d, want 3 and 1", got.Status.Replicas, got.Status.ReadyReplicas)
	}
	availableSince := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAvailable).LastTransitionTime

	// All ready, rollout complete.
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status.ReadyReplicas, d.Status.AvailableReplicas = 3, 3
		d.Status.Conditions = []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, deploymentComplete, "done")}
	})
	got = waitConditions(t, cc, map[string]string{
		v1.ConditionAvailable:   "True/" + ReasonBrokersReady,
		v1.ConditionProgressing: "False/" + ReasonRolloutComplete,
		v1.ConditionDegraded:    "False/" + ReasonAsExpected,
	})
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAvailable); !c.LastTransitionTime.Equal(&availableSince) {
		t.Errorf("Available's transition time moved without a transition: %v -> %v", availableSince, c.LastTransitionTime)
	}

	// A broker dies after the rollout: degraded.
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) { d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2 })
	waitConditions(t, cc, map[string]string{
		v1.ConditionAvailable:   "True/" + ReasonBrokersReady,
		v1.ConditionProgressing: "False/" + ReasonRolloutComplete,
		v1.ConditionDegraded:    "True/" + ReasonBrokersUnavailable,
	})

	// A rollout that exceeds its deadline: stuck, and it says why.
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status.ReadyReplicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas = 0, 0, 1
		d.Status.Conditions = []appsv1.DeploymentCondition{progressing(corev1.ConditionFalse, "ProgressDeadlineExceeded",
			`ReplicaSet "chat-abc" has timed out progressing.`)}
	})
	got = waitConditions(t, cc, map[string]string{
		v1.ConditionAvailable:   "False/" + ReasonNoBrokerReady,
		v1.ConditionProgressing: "False/" + ReasonRolloutStuck,
		v1.ConditionDegraded:    "True/" + ReasonRolloutStuck,
	})
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDegraded); !strings.Contains(c.Message, "timed out progressing") {
		t.Errorf("Degraded message does not carry the Deployment's reason: %q", c.Message)
	}
}

func TestScaleSubresourceScalesTheDeployment(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, true))
	waitForChildren(t, cc, brokerChildren("chat"))
	// Like kubectl scale: read the scale, write it back; the status may change
	// in between, so retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale := &autoscalingv1.Scale{}
		if err := env.Client.SubResource("scale").Get(context.Background(), cc, scale); err != nil {
			return err
		}
		scale.Spec.Replicas = 5
		return env.Client.SubResource("scale").Update(context.Background(), cc, client.WithSubResourceBody(scale))
	})
	if err != nil {
		t.Fatalf("kubectl scale: %v", err)
	}
	testutil.Eventually(t, waitTimeout, "deployment scaled to 5", func(context.Context) (bool, string) {
		d := getDeployment(t, cc)
		return *d.Spec.Replicas == 5, fmt.Sprintf("replicas %d", *d.Spec.Replicas)
	})
	// The scale subresource reads the status the operator wrote.
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) { d.Status.Replicas = 5; d.Status.ObservedGeneration = d.Generation })
	testutil.Eventually(t, waitTimeout, "scale status", func(context.Context) (bool, string) {
		s := &autoscalingv1.Scale{}
		if err := env.Client.SubResource("scale").Get(context.Background(), cc, s); err != nil {
			return false, err.Error()
		}
		return s.Status.Replicas == 5 && strings.Contains(s.Status.Selector, "app.kubernetes.io/instance=chat"),
			fmt.Sprintf("%+v", s.Status)
	})
}

func TestTwoNamespacesDoNotInterfere(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	a := create(t, newCluster(nsA, "chat", 2, false))
	b := create(t, newCluster(nsB, "chat", 3, true))
	waitForChildren(t, a, brokerChildren("chat"))
	waitForChildren(t, b, append(natsChildren("chat"), brokerChildren("chat")...))
	waitConditions(t, b, map[string]string{v1.ConditionProgressing: "True/" + ReasonCreating})
	rvB := resourceVersions(t, b, append(natsChildren("chat"), brokerChildren("chat")...))

	updateCluster(t, a, func(c *v1.CometdCluster) {
		c.Spec.Replicas = ptr.To[int32](4)
		c.Spec.Broker.Timeout = &metav1.Duration{Duration: time.Minute}
	})
	testutil.Eventually(t, waitTimeout, "A scaled", func(context.Context) (bool, string) {
		d := getDeployment(t, a)
		return *d.Spec.Replicas == 4, fmt.Sprint(*d.Spec.Replicas)
	})
	for _, c := range natsChildren("chat") {
		if get(t, nsA, c.name, c.obj) {
			t.Errorf("%s exists in A's namespace, which has no managed NATS", c.name)
		}
	}
	if *getDeployment(t, b).Spec.Replicas != 3 {
		t.Error("B's deployment changed with A's spec")
	}
	for _, c := range brokerChildren("chat") {
		get(t, nsA, c.name, c.obj)
		if c.obj.GetOwnerReferences()[0].UID != a.UID {
			t.Errorf("A's %s is owned by %v", c.name, c.obj.GetOwnerReferences())
		}
	}
	// Wait for A to settle (its status written), then B must be untouched.
	waitConditions(t, a, map[string]string{v1.ConditionProgressing: "True/" + ReasonCreating})
	if got := resourceVersions(t, b, append(natsChildren("chat"), brokerChildren("chat")...)); !equalMaps(got, rvB) {
		t.Errorf("B's objects changed while A was updated:\nbefore %v\nafter  %v", rvB, got)
	}
}

// resourceVersions records the resourceVersion of the cluster and each child.
func resourceVersions(t *testing.T, cc *v1.CometdCluster, children []child) map[string]string {
	t.Helper()
	rv := map[string]string{}
	cur := &v1.CometdCluster{}
	get(t, cc.Namespace, cc.Name, cur)
	rv["CometdCluster"] = cur.ResourceVersion
	for _, c := range children {
		o := c.obj.DeepCopyObject().(client.Object)
		if !get(t, cc.Namespace, c.name, o) {
			t.Fatalf("%T %s missing", o, c.name)
		}
		rv[fmt.Sprintf("%T/%s", o, c.name)] = o.GetResourceVersion()
	}
	return rv
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A reconcile with nothing to change writes nothing: not the cluster's status,
// not a single child, whatever the mode.
func TestNoOpReconcileWritesNothing(t *testing.T) {
	ns := newNamespace(t)
	cc := newCluster(ns, "chat", 3, true)
	cc.Spec.Service.Type = corev1.ServiceTypeLoadBalancer // allocated node ports
	cc.Spec.Service.Annotations = map[string]string{"lb.example.com/scheme": "internal", "a": "b"}
	cc.Spec.Pod.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
	cc.Spec.Broker.AllowedOrigins = []string{"https://app.example.com"}
	create(t, cc)
	children := append(natsChildren("chat"), brokerChildren("chat")...)
	waitForChildren(t, cc, children)
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 3,
			ReadyReplicas: 3, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, deploymentComplete, "done")}}
	})
	waitConditions(t, cc, map[string]string{v1.ConditionProgressing: "False/" + ReasonRolloutComplete})

	assertNoOpReconcile(t, cc, children)
}

// assertNoOpReconcile waits until a reconcile of cc writes nothing, then
// checks that three more write nothing either.
func assertNoOpReconcile(t *testing.T, cc *v1.CometdCluster, children []child) {
	t.Helper()
	ns := cc.Namespace
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "chat"}}
	// The same reconciler, with every write it attempts counted (a write the
	// API server would find unchanged still counts, and would emit an Event).
	counting := &writeCounter{Client: reconciler.Client}
	r := *reconciler
	r.Client = counting
	// Let the manager's cache catch up with the last writes: a reconcile on a
	// stale cache may legitimately write. Once it settles, reconciles are no-ops.
	testutil.Eventually(t, waitTimeout, "a settled state", func(context.Context) (bool, string) {
		counting.reset()
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			return false, err.Error()
		}
		return counting.total() == 0, fmt.Sprintf("reconcile wrote %v", counting.writes())
	})
	before := resourceVersions(t, cc, children)
	counting.reset()
	for range 3 {
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
	}
	if n := counting.total(); n != 0 {
		t.Fatalf("a no-op reconcile made %d write requests: %v", n, counting.writes())
	}
	if after := resourceVersions(t, cc, children); !equalMaps(before, after) {
		t.Fatalf("a no-op reconcile wrote:\nbefore %v\nafter  %v", before, after)
	}
}

// writeCounter is a client that records every write request it passes on.
type writeCounter struct {
	client.Client
	mu  sync.Mutex
	log []string
}

func (w *writeCounter) note(verb string, obj client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, fmt.Sprintf("%s %T %s", verb, obj, obj.GetName()))
}

func (w *writeCounter) reset() { w.mu.Lock(); w.log = nil; w.mu.Unlock() }

func (w *writeCounter) total() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.log) }

func (w *writeCounter) writes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

func (w *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.note("create", obj)
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.note("update", obj)
	return w.Client.Update(ctx, obj, opts...)
}

func (w *writeCounter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	w.note("patch", obj)
	return w.Client.Patch(ctx, obj, p, opts...)
}

func (w *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	w.note("delete", obj)
	return w.Client.Delete(ctx, obj, opts...)
}

func (w *writeCounter) Status() client.SubResourceWriter {
	return &statusCounter{SubResourceWriter: w.Client.Status(), w: w}
}

func (w *writeCounter) SubResource(sub string) client.SubResourceClient {
	return &subResourceCounter{SubResourceClient: w.Client.SubResource(sub), w: w, sub: sub}
}

type subResourceCounter struct {
	client.SubResourceClient
	w   *writeCounter
	sub string
}

func (s *subResourceCounter) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.w.note(s.sub+" create", obj)
	return s.SubResourceClient.Create(ctx, obj, sub, opts...)
}

func (s *subResourceCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.note(s.sub+" update", obj)
	return s.SubResourceClient.Update(ctx, obj, opts...)
}

func (s *subResourceCounter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.note(s.sub+" patch", obj)
	return s.SubResourceClient.Patch(ctx, obj, p, opts...)
}

type statusCounter struct {
	client.SubResourceWriter
	w *writeCounter
}

func (s *statusCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.note("status update", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *statusCounter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.note("status patch", obj)
	return s.SubResourceWriter.Patch(ctx, obj, p, opts...)
}

// A name collision with an object the operator does not manage is reported
// as Degraded with a message that says what to do, and heals once it is gone.
func TestForeignObjectIsReportedAsDegraded(t *testing.T) {
	ns := newNamespace(t)
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "chat-config", Namespace: ns},
		Data: map[string]string{"mine": "yes"}}
	if err := env.Client.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	cc := create(t, newCluster(ns, "chat", 1, false))
	got := waitConditions(t, cc, map[string]string{v1.ConditionDegraded: "True/" + ReasonApplyFailed})
	c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDegraded)
	if !strings.Contains(c.Message, "ConfigMap named chat-config already exists and is not managed by this operator") {
		t.Errorf("Degraded message is not actionable: %q", c.Message)
	}
	if err := env.Client.Delete(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	waitForChildren(t, cc, brokerChildren("chat"))
	waitConditions(t, cc, map[string]string{v1.ConditionDegraded: "False/" + ReasonAsExpected})
}

// A settings rollout surges one broker above the desired count (maxSurge 1,
// maxUnavailable 0): that is a rolling update, not a scale-down. Lowering
// spec.replicas is a scale-down.
func TestRollingUpdateSurgeIsNotAScaleDown(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 3, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 3,
			ReadyReplicas: 3, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, deploymentComplete, "done")}}
	})
	waitConditions(t, cc, map[string]string{v1.ConditionProgressing: "False/" + ReasonRolloutComplete})

	// A broker setting changes: the Deployment controller starts one new pod
	// next to the three old ones, then replaces them one by one.
	gen := getDeployment(t, cc).Generation
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Broker.Timeout = &metav1.Duration{Duration: 50 * time.Second} })
	testutil.Eventually(t, waitTimeout, "deployment template updated", func(context.Context) (bool, string) {
		g := getDeployment(t, cc).Generation
		return g > gen, fmt.Sprintf("generation %d", g)
	})
	for updated := int32(1); updated <= 3; updated++ {
		setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 4, UpdatedReplicas: updated,
				ReadyReplicas: 4, AvailableReplicas: 3,
				Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, "ReplicaSetUpdated", "progressing")}}
		})
		waitConditionsSaying(t, cc, map[string]string{
			v1.ConditionProgressing: "True/" + ReasonRollingUpdate,
			v1.ConditionDegraded:    "False/" + ReasonAsExpected,
		}, fmt.Sprintf("%d of 3 brokers run the current spec", updated))
	}

	// A real scale-down: three current pods, two asked for.
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Replicas = ptr.To[int32](2) })
	testutil.Eventually(t, waitTimeout, "deployment scaled to 2", func(context.Context) (bool, string) {
		d := getDeployment(t, cc)
		return *d.Spec.Replicas == 2, fmt.Sprintf("replicas %d", *d.Spec.Replicas)
	})
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 3,
			ReadyReplicas: 3, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, deploymentComplete, "done")}}
	})
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionProgressing: "True/" + ReasonScalingDown}, "from 3 to 2")
}

// A spec the API server refuses for one child (here a pod annotation key the
// Deployment validation rejects) makes the cluster Degraded, but the
// conditions about the running brokers keep telling what they do, for the
// current generation: nothing is rebuilt from an empty observation, nothing
// is left stale.
func TestApplyErrorKeepsReportingTheRunningBrokers(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, false)) // external NATS
	waitForChildren(t, cc, brokerChildren("chat"))
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2,
			ReadyReplicas: 2, AvailableReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{progressing(corev1.ConditionTrue, deploymentComplete, "done")}}
	})
	a, b := startBrokerPod(t, cc, "chat-a"), startBrokerPod(t, cc, "chat-b")
	enforceCurrentPolicy(t, cc, a, b)
	healthy := map[string]string{
		v1.ConditionAvailable:     "True/" + ReasonBrokersReady,
		v1.ConditionProgressing:   "False/" + ReasonRolloutComplete,
		v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced,
		v1.ConditionFanoutReady:   "True/" + ReasonFanoutMeshed,
		v1.ConditionDegraded:      "False/" + ReasonAsExpected,
	}
	waitConditions(t, cc, healthy)

	// The Deployment cannot be updated: Degraded, and the rest still true of
	// the running brokers, at the new generation.
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Pod.Annotations = map[string]string{"not a valid key!": "x"} })
	got := waitConditions(t, cc, map[string]string{
		v1.ConditionDegraded:      "True/" + ReasonApplyFailed,
		v1.ConditionAvailable:     "True/" + ReasonBrokersReady,
		v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced,
		v1.ConditionFanoutReady:   "True/" + ReasonFanoutMeshed,
	})
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDegraded); !strings.Contains(c.Message, "Deployment chat") {
		t.Errorf("Degraded message does not name the child: %q", c.Message)
	}

	// While the apply keeps failing, FanoutReady still follows the brokers.
	// A pod event drives the reconcile (the failing one backs off).
	b.setDisconnected(true)
	touchPod(t, ns, "chat-b")
	waitConditionsSaying(t, cc, map[string]string{
		v1.ConditionDegraded:    "True/" + ReasonApplyFailed,
		v1.ConditionFanoutReady: "False/" + ReasonBackboneDisconnected,
	}, "chat-b")
	b.setDisconnected(false)

	// Fixed: healthy again.
	updateCluster(t, cc, func(c *v1.CometdCluster) { c.Spec.Pod.Annotations = nil })
	waitConditions(t, cc, healthy)
}

// touchPod changes an annotation of the pod, so that its watchers see an event.
func touchPod(t *testing.T, ns, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &corev1.Pod{}
		if !get(t, ns, name, p) {
			return fmt.Errorf("pod %s missing", name)
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["test/touched"] = time.Now().Format(time.RFC3339Nano)
		return env.Client.Update(context.Background(), p)
	})
	if err != nil {
		t.Fatalf("touch pod %s: %v", name, err)
	}
}
