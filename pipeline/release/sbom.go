package release

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// SBOMPackage is one component of an image's software bill of materials.
type SBOMPackage struct {
	Name, Version, Source, License, Supplier string
}

// ReadPackagesTSV reads the rootfs build's package list: package, version,
// architecture, source, source version, licenses ("|"-separated).
func ReadPackagesTSV(file string) ([]SBOMPackage, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []SBOMPackage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 6 {
			return nil, fmt.Errorf("%s: bad line %q", file, sc.Text())
		}
		out = append(out, SBOMPackage{Name: c[0], Version: c[1], Source: c[3] + " " + c[4],
			License: strings.ReplaceAll(c[5], "|", " AND "), Supplier: "Organization: Debian"})
	}
	return out, sc.Err()
}

// SBOM renders an SPDX 2.3 document of an image's packages.
func SBOM(image, version string, pkgs []SBOMPackage) ([]byte, error) {
	type spdxPkg struct {
		SPDXID           string `json:"SPDXID"`
		Name             string `json:"name"`
		VersionInfo      string `json:"versionInfo"`
		Supplier         string `json:"supplier"`
		SourceInfo       string `json:"sourceInfo,omitempty"`
		DownloadLocation string `json:"downloadLocation"`
		LicenseDeclared  string `json:"licenseDeclared"`
		LicenseComments  string `json:"licenseComments,omitempty"`
		FilesAnalyzed    bool   `json:"filesAnalyzed"`
	}
	doc := map[string]any{
		"spdxVersion":       "SPDX-2.3",
		"dataLicense":       "CC0-1.0",
		"SPDXID":            "SPDXRef-DOCUMENT",
		"name":              image,
		"documentNamespace": "https://github.com/k3os-rpi/k3os-rpi4/spdx/" + image,
		"creationInfo": map[string]any{
			"created":  "2026-01-01T00:00:00Z", // SOURCE_DATE_EPOCH: the SBOM is reproducible too
			"creators": []string{"Tool: k3os-rpi4 " + version},
		},
	}
	var ps []spdxPkg
	for i, p := range pkgs {
		// Debian's license short names (GPL-2+, ...) are not SPDX
		// expressions: they go into the comment, as found.
		comment := ""
		if p.License != "" && p.License != "NOASSERTION" {
			comment = "licenses named in the package's copyright file: " + p.License
		}
		ps = append(ps, spdxPkg{SPDXID: fmt.Sprintf("SPDXRef-Package-%d", i), Name: p.Name, VersionInfo: p.Version,
			Supplier: p.Supplier, SourceInfo: p.Source, DownloadLocation: "NOASSERTION", LicenseDeclared: "NOASSERTION",
			LicenseComments: comment})
	}
	doc["packages"] = ps
	b, err := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n'), err
}
