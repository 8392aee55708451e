import Foundation

/// Where a flasher stub was found, in words for the operator ("$VIRTUAL_ENV (/home/me/venv)").
public struct StubLocation: Sendable, Equatable {
    public var path: String
    public var foundBy: String

    public init(path: String, foundBy: String) {
        self.path = path
        self.foundBy = foundBy
    }
}

/// The outcome of a stub search: the stub found, or nil with the places that were looked at.
public struct StubSearchResult: Sendable, Equatable {
    public var found: StubLocation?
    /// Every place looked at, in order, as "what (folder)".
    public var searched: [String]
    /// A stub named by `$ESPFORGE_STUB` that does not exist (an error for the caller to report).
    public var missingExplicit: String?
}

/// Finds esptool's flasher stub (`targets/stub_flasher/{2,1}/<chip>.json`) in known places,
/// reading folders only: no interpreter or other process is ever started.
///
/// Order (the first readable file wins; `--stub FILE` is handled by the caller before this):
/// 1. `$ESPFORGE_STUB`: a stub JSON file;
/// 2. `$ESPFORGE_ESPTOOL_STUBS`: a `stub_flasher` folder;
/// 3. the active virtualenv, `$VIRTUAL_ENV/lib/python3*/site-packages`;
/// 4. the oracle venv, `$ESPFORGE_ORACLE/../lib/python3*/site-packages` (and `/tmp/oracle-venv`);
/// 5. pip's user site-packages, `~/.local/lib/python3*/site-packages`;
/// 6. the system's `/usr/local/lib/python3*/{site,dist}-packages`, `/usr/lib/python3/dist-packages`,
///    `/usr/lib/python3*/{site,dist}-packages`.
/// Within a `lib` folder the newest Python version comes first; subfolder "2" (current stub) before
/// "1" (legacy), as esptool searches.
public enum StubLocator {
    public static func search(chip: String = "esp32",
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              home: String? = nil) -> StubSearchResult {
        var result = StubSearchResult(found: nil, searched: [])
        func nonEmpty(_ k: String) -> String? { environment[k].flatMap { $0.isEmpty ? nil : $0 } }

        if let file = nonEmpty("ESPFORGE_STUB") {
            result.searched.append("$ESPFORGE_STUB (\(file))")
            if FileManager.default.isReadableFile(atPath: file) {
                result.found = StubLocation(path: file, foundBy: "$ESPFORGE_STUB")
            } else {
                result.missingExplicit = file
            }
            return result
        }
        var places: [(what: String, dir: String)] = []
        if let d = nonEmpty("ESPFORGE_ESPTOOL_STUBS") { places.append(("$ESPFORGE_ESPTOOL_STUBS", d)) }
        if let venv = nonEmpty("VIRTUAL_ENV") {
            places += sitePackages(lib: venv + "/lib", kinds: ["site-packages"]).map { ("$VIRTUAL_ENV (\(venv))", $0) }
        }
        var oracleBins: [String] = []
        if let o = nonEmpty("ESPFORGE_ORACLE") { oracleBins.append(o) }
        oracleBins.append("/tmp/oracle-venv/bin")
        for bin in oracleBins {
            let root = URL(fileURLWithPath: bin).deletingLastPathComponent().path
            places += sitePackages(lib: root + "/lib", kinds: ["site-packages"]).map { ("oracle venv (\(root))", $0) }
        }
        if let h = home ?? nonEmpty("HOME") {
            places += sitePackages(lib: h + "/.local/lib", kinds: ["site-packages"]).map { ("pip user site-packages", $0) }
        }
        places += sitePackages(lib: "/usr/local/lib", kinds: ["site-packages", "dist-packages"]).map { ("system site-packages", $0) }
        places.append(("system dist-packages", "/usr/lib/python3/dist-packages"))
        places += sitePackages(lib: "/usr/lib", kinds: ["site-packages", "dist-packages"]).map { ("system site-packages", $0) }

        var seen = Set<String>()
        for place in places where seen.insert(place.dir).inserted {
            let stubs = place.what == "$ESPFORGE_ESPTOOL_STUBS" ? place.dir : place.dir + "/esptool/targets/stub_flasher"
            result.searched.append("\(place.what) (\(stubs))")
            for sub in ["2", "1", ""] {
                let p = sub.isEmpty ? "\(stubs)/\(chip).json" : "\(stubs)/\(sub)/\(chip).json"
                if FileManager.default.isReadableFile(atPath: p) {
                    result.found = StubLocation(path: p, foundBy: place.what)
                    return result
                }
            }
        }
        return result
    }

    /// `lib/python3.X/<kind>` folders that exist, newest Python first.
    static func sitePackages(lib: String, kinds: [String]) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: lib) else { return [] }
        let versions = names.compactMap { name -> (String, [Int])? in
            guard name.hasPrefix("python3") else { return nil }
            let parts = name.dropFirst("python".count).split(separator: ".").map { Int($0) ?? -1 }
            return (name, parts)
        }.sorted { $0.1.lexicographicallyPrecedes($1.1) }.reversed()
        var out: [String] = []
        for (name, _) in versions {
            for kind in kinds {
                var isDir: ObjCBool = false
                let d = "\(lib)/\(name)/\(kind)"
                if FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue { out.append(d) }
            }
        }
        return out
    }
}
