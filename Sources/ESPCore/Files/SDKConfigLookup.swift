import Foundation

/// Which `sdkconfig` an ESP-IDF build folder was configured with: the one lookup shared by every
/// reader of a build folder (`preflight --build-dir` and `doctor` through Diagnostics'
/// `BuildDirectory`, the manifest's `[build]` / `provision` through Manifest's `IDFBuild`), so
/// they can never read different configurations of one build.
///
/// Order (paths relative to the build folder; the first file that exists wins):
/// 1. the project's `sdkconfig`: `project_path` from the build's `project_description.json`,
///    else the build folder's parent (`../sdkconfig`). `idf.py build` reads it and `menuconfig`
///    edits it, so it is the project's configuration;
/// 2. `sdkconfig` inside the build folder;
/// 3. `config/sdkconfig` inside the build folder;
/// 4. `config/sdkconfig.json` (the form the build generates; keys without `CONFIG_`).
/// An explicit path given by the operator (`preflight --sdkconfig`) replaces the lookup.
public enum SDKConfigLookup {
    public enum Format: Sendable, Equatable { case text, json }

    public struct Candidate: Sendable, Equatable {
        /// Relative to the build folder (`..` allowed).
        public var path: String
        public var format: Format
    }

    public struct Found: Sendable, Equatable {
        public var path: String
        public var format: Format
        public var bytes: [UInt8]
    }

    /// The candidates in order, given the build's `project_description.json` (nil if absent).
    public static func candidates(projectDescription: [UInt8]?) -> [Candidate] {
        let project = projectFolder(projectDescription: projectDescription)
        var out = [Candidate(path: project == "." ? "sdkconfig" : project + "/sdkconfig", format: .text)]
        for c in [Candidate(path: "../sdkconfig", format: .text), Candidate(path: "sdkconfig", format: .text),
                  Candidate(path: "config/sdkconfig", format: .text), Candidate(path: "config/sdkconfig.json", format: .json)]
        where !out.contains(c) {
            out.append(c)
        }
        return out
    }

    /// The project folder relative to the build folder: `project_path` from the build's
    /// `project_description.json` (nil if absent or unreadable: the build folder's parent, `..`).
    public static func projectFolder(projectDescription: [UInt8]?) -> String {
        if let pd = projectDescription,
           let obj = (try? JSONSerialization.jsonObject(with: Data(pd))) as? [String: Any],
           let pp = obj["project_path"] as? String, let bp = obj["build_dir"] as? String {
            return relativePath(from: bp, to: pp)
        }
        return ".."
    }

    /// Finds the sdkconfig through `read(pathRelativeToBuildFolder)` (nil: no such file).
    public static func find<E: Error>(read: (String) throws(E) -> [UInt8]?) throws(E) -> Found? {
        for c in candidates(projectDescription: try read("project_description.json")) {
            if let b = try read(c.path) { return Found(path: c.path, format: c.format, bytes: b) }
        }
        return nil
    }

    /// `config/sdkconfig.json` as `CONFIG_X` → text values (`y`/`n` for booleans).
    public static func values(json: [String: Any]) -> [String: String] {
        var v: [String: String] = [:]
        for (key, value) in json {
            let k = key.hasPrefix("CONFIG_") ? key : "CONFIG_" + key
            switch value {
            case let b as Bool: v[k] = b ? "y" : "n"
            case let i as Int: v[k] = String(i)
            case let s as String: v[k] = s
            default: continue
            }
        }
        return v
    }

    /// Removes `x/..` and `.` components where it can (keeps leading `..`).
    public static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for c in path.split(separator: "/") {
            if c == "." || c.isEmpty { continue }
            if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            if c == "..", absolute, parts.isEmpty { continue }
            parts.append(c)
        }
        let s = parts.joined(separator: "/")
        return absolute ? "/" + s : (s.isEmpty ? "." : s)
    }

    /// Relative path from folder `from` to `to` (both absolute, or both relative to the same place).
    public static func relativePath(from: String, to: String) -> String {
        let f = normalize(from).split(separator: "/"), t = normalize(to).split(separator: "/")
        var i = 0
        while i < f.count, i < t.count, f[i] == t[i] { i += 1 }
        let all = Array(repeating: "..", count: f.count - i) + t[i...].map(String.init)
        return all.isEmpty ? "." : all.joined(separator: "/")
    }
}
