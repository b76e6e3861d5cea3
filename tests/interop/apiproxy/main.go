// interop-apiproxy: a TLS front for this project's HTTPS API stand-in (multus-testsupport's api_server), for
// tests/interop only. Upstream's Go Multus sends request bodies in protobuf (pkg/k8sclient/kubeconfig.go,
// GetK8sClient: ContentType "application/vnd.kubernetes.protobuf"), as a real API server accepts; the
// stand-in reads JSON. Each protobuf request body is decoded with client-go's scheme and forwarded as JSON;
// everything else (the JSON answers, LIST, WATCH streams, the bearer token) passes through unchanged.
//
// Built by tests/interop/go-multus.sh inside upstream's source tree (its vendor/ has every package used).
//
//	interop-apiproxy -upstream https://127.0.0.1:PORT -upstream-ca ca.pem -ca-out proxy-ca.crt -addr-out addr
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes/scheme"
)

func main() {
	upstream := flag.String("upstream", "", "the stand-in, https://127.0.0.1:PORT")
	upstreamCA := flag.String("upstream-ca", "", "the stand-in's CA certificate (PEM file)")
	caOut := flag.String("ca-out", "", "where to write this proxy's certificate (PEM), for the client to trust")
	addrOut := flag.String("addr-out", "", "where to write host:port once listening")
	flag.Parse()
	if *upstream == "" || *upstreamCA == "" || *caOut == "" || *addrOut == "" {
		log.Fatal("interop-apiproxy: -upstream, -upstream-ca, -ca-out and -addr-out are required")
	}
	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatalf("interop-apiproxy: -upstream: %v", err)
	}
	caPEM, err := os.ReadFile(*upstreamCA)
	if err != nil {
		log.Fatalf("interop-apiproxy: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatalf("interop-apiproxy: no certificate in %s", *upstreamCA)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	proxy.FlushInterval = -1 // watches: every event at once

	decoder := scheme.Codecs.UniversalDeserializer()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/vnd.kubernetes.protobuf") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			obj, gvk, err := decoder.Decode(body, nil, nil)
			if err != nil {
				log.Printf("%s %s: protobuf body not decoded: %v", r.Method, r.URL.Path, err)
				http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
				return
			}
			obj.GetObjectKind().SetGroupVersionKind(*gvk)
			js, err := json.Marshal(obj)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			log.Printf("%s %s: %s body, protobuf -> JSON (%d -> %d bytes)", r.Method, r.URL.Path, gvk.Kind, len(body), len(js))
			r.Body = io.NopCloser(bytes.NewReader(js))
			r.ContentLength = int64(len(js))
			r.Header.Set("Content-Type", "application/json")
		}
		proxy.ServeHTTP(w, r)
	})

	cert, certPEM, err := selfSigned()
	if err != nil {
		log.Fatalf("interop-apiproxy: certificate: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		log.Fatalf("interop-apiproxy: listen: %v", err)
	}
	if err := writeAtomic(*caOut, certPEM); err != nil {
		log.Fatal(err)
	}
	if err := writeAtomic(*addrOut, []byte(ln.Addr().String())); err != nil {
		log.Fatal(err)
	}
	log.Printf("interop-apiproxy: %s -> %s", ln.Addr(), target)
	log.Fatal(http.Serve(ln, handler))
}

// selfSigned makes a certificate for 127.0.0.1 that is its own CA.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "interop-apiproxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("interop-apiproxy: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("interop-apiproxy: %w", err)
	}
	return nil
}
