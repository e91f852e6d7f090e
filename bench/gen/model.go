package main

// class is the kind of client behind an event; --stats and the mix test
// count events per class. A class follows from the event's user alone (see
// classify in gen_test.go), so a reader of the corpus can recompute it.
type class uint8

const (
	classController      class = iota // kube-controller-manager, its *-controller service accounts, system:apiserver
	classScheduler                    // system:kube-scheduler
	classKubelet                      // system:node:node-NN
	classServiceAccount               // add-ons and operators running in pods
	classHuman                        // people through kubectl (including "attacker")
	classAnonymous                    // system:anonymous: probes, health checks, unauthenticated scans
	classUnauthenticated              // failed authentication: "user":{} and code 401
	numClasses
)

var classNames = [numClasses]string{
	"controller", "scheduler", "kubelet", "serviceaccount", "human", "anonymous", "unauthenticated",
}

func (c class) String() string { return classNames[c] }

// Audit levels and stages, as audit.k8s.io/v1 spells them.
const (
	levelMetadata        = "Metadata"
	levelRequest         = "Request"
	levelRequestResponse = "RequestResponse"

	stageRequestReceived  = "RequestReceived"
	stageResponseStarted  = "ResponseStarted"
	stageResponseComplete = "ResponseComplete"
)

// event is one line of the corpus: an audit.k8s.io/v1 Event at one stage.
// Strings are written as they are; bodies are compact JSON already.
type event struct {
	level          string
	auditID        string
	stage          string
	requestURI     string
	verb           string
	user           *userInfo // nil when authentication failed: written as {}
	impersonated   *userInfo
	constraint     string // authenticationMetadata.impersonationConstraint
	sourceIPs      []string
	userAgent      string
	objectRef      *objectRef
	responseStatus *status
	requestObject  []byte
	responseObject []byte
	received       int64        // requestReceivedTimestamp, Unix microseconds
	stageAt        int64        // stageTimestamp, Unix microseconds
	annotations    []annotation // sorted by key, as encoding/json sorts map keys

	class class
	seq   uint64 // scheduling order, breaks ties between equal stage times
}

type annotation struct{ key, value string }

// userInfo mirrors authentication/v1 UserInfo; extra must be sorted by key.
type userInfo struct {
	username string
	uid      string
	groups   []string
	extra    []extraValue
}

type extraValue struct {
	key    string
	values []string
}

// objectRef mirrors audit/v1 ObjectReference.
type objectRef struct {
	resource        string
	namespace       string
	name            string
	uid             string
	apiGroup        string
	apiVersion      string
	resourceVersion string
	subresource     string
}

// status mirrors the fields of meta/v1 Status that the audit code copies.
type status struct {
	status  string
	message string
	reason  string
	details *statusDetails
	code    int
}

type statusDetails struct{ name, group, kind, uid string }

// actor is a client identity: who it authenticates as, where it connects
// from and what it calls itself.
type actor struct {
	class  class
	user   *userInfo
	ua     string
	ip     string // the peer address the API server sees
	reason string // authorization.k8s.io/reason when the request is allowed
}

// Annotation keys written by the API server's authorizer filter.
const (
	annDecision = "authorization.k8s.io/decision"
	annReason   = "authorization.k8s.io/reason"
)

// Extra keys set by the authenticators; sorted.
const (
	extraCredentialID = "authentication.kubernetes.io/credential-id"
	extraNodeName     = "authentication.kubernetes.io/node-name"
	extraNodeUID      = "authentication.kubernetes.io/node-uid"
	extraPodName      = "authentication.kubernetes.io/pod-name"
	extraPodUID       = "authentication.kubernetes.io/pod-uid"
)
