package vmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The API client trusts the kubeconfig's CA, presents its client
// certificate and reads a node as k3s's API server returns it.
func TestAPIClient(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	clientCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	clientKey := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/v1/nodes/k3os-agent" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"metadata":{"name":"k3os-agent","labels":{"k3os.io/pool":"edge"}},
			"spec":{"taints":[{"key":"k3os.io/dedicated","value":"edge","effect":"NoSchedule"}]},
			"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-26T06:00:00Z"}],
			"nodeInfo":{"kubeletVersion":"v1.21.2+k3s1"}}}`)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	b64 := base64.StdEncoding.EncodeToString
	kubeconfig := `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ` + b64(ca) + `
    server: https://127.0.0.1:6443
  name: default
users:
- name: default
  user:
    client-certificate-data: ` + b64(clientCert) + `
    client-key-data: ` + b64(clientKey) + "\n"
	port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])

	api, err := NewAPIClient([]byte(kubeconfig), port)
	if err != nil {
		t.Fatal(err)
	}
	n, err := api.Node(context.Background(), "k3os-agent")
	if err != nil {
		t.Fatal(err)
	}
	if n.Ready(time.Date(2026, 11, 26, 6, 0, 1, 0, time.UTC)) {
		t.Error("a heartbeat from before the boot counts as Ready")
	}
	if !n.Ready(time.Date(2026, 11, 26, 5, 59, 0, 0, time.UTC)) || !n.HasTaint("k3os.io/dedicated=edge:NoSchedule") || n.HasTaint("k3os.io/dedicated=edge:NoExecute") ||
		n.Metadata.Labels["k3os.io/pool"] != "edge" || n.Status.NodeInfo.KubeletVersion != "v1.21.2+k3s1" {
		t.Errorf("node = %+v", n)
	}
	if _, err := api.Node(context.Background(), "other"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing node: err = %v", err)
	}
	if _, err := NewAPIClient([]byte("clusters: []\n"), port); err == nil {
		t.Error("a kubeconfig without clusters was accepted")
	}
}
