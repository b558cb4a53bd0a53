// A CoreDNS with only the plugins the real test node's Corefile uses (deploy/testenv/node.sh).
// The default build links every plugin, cloud DNS providers' SDKs included, and takes several
// times as long to compile on a cold machine.
package main

import (
	"log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	// In CoreDNS's execution order (its plugin.cfg), restricted to the plugins linked above.
	if err := dnsserver.SetDirectives([]string{"bind", "ready", "errors", "cache", "kubernetes"}); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
