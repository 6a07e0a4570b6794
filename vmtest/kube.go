package vmtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"gopkg.in/yaml.v3"
)

// APIClient talks to a k3s API server from the host, through the port
// QEMU forwards to the node's 6443, with the credentials of the node's
// kubeconfig: what a user's kubectl does once they copy k3s.yaml. The
// three calls the test makes need no Kubernetes client library.
type APIClient struct {
	http *http.Client
	base string
}

// kubeconfig is the part of a kubeconfig k3s writes that the client uses.
type kubeconfig struct {
	Clusters []struct {
		Cluster struct {
			CA string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		User struct {
			Cert string `yaml:"client-certificate-data"`
			Key  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// NewAPIClient reads a k3s kubeconfig and points it at 127.0.0.1:port
// (k3s's serving certificate names 127.0.0.1).
func NewAPIClient(config []byte, port int) (*APIClient, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(config, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if len(kc.Clusters) == 0 || len(kc.Users) == 0 {
		return nil, fmt.Errorf("kubeconfig: no cluster or no user")
	}
	pem := map[string][]byte{}
	for name, s := range map[string]string{"CA": kc.Clusters[0].Cluster.CA, "client certificate": kc.Users[0].User.Cert, "client key": kc.Users[0].User.Key} {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("kubeconfig: no %s data", name)
		}
		pem[name] = b
	}
	cert, err := tls.X509KeyPair(pem["client certificate"], pem["client key"])
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem["CA"]) {
		return nil, fmt.Errorf("kubeconfig: the CA data holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	return &APIClient{http: &http.Client{Transport: tr, Timeout: 20 * time.Second}, base: fmt.Sprintf("https://127.0.0.1:%d", port)}, nil
}

// KubeNode is what the test reads of a Kubernetes node.
type KubeNode struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Taints []struct {
			Key    string `json:"key"`
			Value  string `json:"value"`
			Effect string `json:"effect"`
		} `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			// LastHeartbeatTime is when the kubelet last reported it.
			LastHeartbeatTime time.Time `json:"lastHeartbeatTime"`
		} `json:"conditions"`
		NodeInfo struct {
			KubeletVersion string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

// Ready says whether the node's Ready condition is True, as its kubelet
// reported after since: a node's status outlives a reboot until the
// controller manager notices the kubelet's silence.
func (n *KubeNode) Ready(since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True" && c.LastHeartbeatTime.After(since)
		}
	}
	return false
}

// HasTaint says whether the node carries the taint "key=value:Effect".
func (n *KubeNode) HasTaint(taint string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key+"="+t.Value+":"+t.Effect == taint {
			return true
		}
	}
	return false
}

// Node reads one node from the API.
func (c *APIClient) Node(ctx context.Context, name string) (*KubeNode, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/nodes/"+name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/nodes/%s: %s: %.200s", name, resp.Status, body)
	}
	var n KubeNode
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("GET /api/v1/nodes/%s: %w", name, err)
	}
	return &n, nil
}
