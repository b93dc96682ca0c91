package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestSecuritySections: spec.mtls and spec.accessControl are read with
// daprd's field names; a later file's section replaces an earlier one's;
// an absent policies key stays nil (it changes the default action).
func TestSecuritySections(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: a}
spec:
  mtls:
    enabled: false
    sentryAddress: localhost:50003
    controlPlaneTrustDomain: cp.local
    workloadCertTTL: 1h
    allowedClockSkew: 5m
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app1
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /op1
        httpVerb: ['POST', 'GET']
        action: deny
`)
	c, err := LoadConfiguration([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	m := c.Spec.MTLS
	if m == nil || m.Enabled == nil || *m.Enabled || m.SentryAddress != "localhost:50003" || m.ControlPlaneTrustDomain != "cp.local" || m.WorkloadCertTTL != "1h" || m.AllowedClockSkew != "5m" {
		t.Fatalf("mtls = %+v", m)
	}
	want := &AccessControlSpec{DefaultAction: "deny", TrustDomain: "public", Policies: []AppPolicySpec{{
		AppID: "app1", DefaultAction: "allow", TrustDomain: "public", Namespace: "default",
		Operations: []AppOperation{{Name: "/op1", HTTPVerb: []string{"POST", "GET"}, Action: "deny"}},
	}}}
	if !reflect.DeepEqual(c.Spec.AccessControl, want) {
		t.Fatalf("accessControl = %+v, want %+v", c.Spec.AccessControl, want)
	}
	b := writeFile(t, dir, "b.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: b}\nspec:\n  accessControl:\n    trustDomain: other\n")
	c, err = LoadConfiguration([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if ac := c.Spec.AccessControl; ac.TrustDomain != "other" || ac.Policies != nil || c.Spec.MTLS == nil {
		t.Fatalf("merged: accessControl %+v, mtls %+v", ac, c.Spec.MTLS)
	}
	if c, _ := LoadConfiguration(nil); c.Spec.MTLS != nil || c.Spec.AccessControl != nil {
		t.Fatal("absent sections are not nil")
	}
}

func TestSecuritySectionErrors(t *testing.T) {
	dir := t.TempDir()
	head := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n"
	cases := map[string]string{
		"policy without namespace":   "  accessControl:\n    policies: [{appId: a, trustDomain: public}]\n",
		"policy without trustDomain": "  accessControl:\n    policies: [{appId: a, namespace: default}]\n",
		"policy without appId":       "  accessControl:\n    policies: [{trustDomain: public, namespace: default}]\n",
		"bad default action":         "  accessControl:\n    defaultAction: maybe\n",
		"bad policy action":          "  accessControl:\n    policies: [{appId: a, trustDomain: t, namespace: n, defaultAction: permit}]\n",
		"operation without action":   "  accessControl:\n    policies: [{appId: a, trustDomain: t, namespace: n, operations: [{name: /x}]}]\n",
		"operation without name":     "  accessControl:\n    policies: [{appId: a, trustDomain: t, namespace: n, operations: [{action: allow}]}]\n",
		"bad ttl":                    "  mtls:\n    workloadCertTTL: forever\n",
		"enabled not a bool":         "  mtls:\n    enabled: sometimes\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			f := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", head+body)
			if _, err := LoadConfiguration([]string{f}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
