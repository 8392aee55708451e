import ESPCore
import Foundation

/// The files `espforge demo` owns in its folder, so a rerun removes exactly those and nothing else.
///
/// Before writing anything the demo records every name it is about to create in
/// `.espforge-demo-files` (one relative path a line). A rerun — after a finished demo or one
/// killed half-way through setup — removes the listed entries and starts over; files it did not
/// write stay. A folder with files but no record is refused, unless it is a demo written before
/// the record existed (recognised by its generated manifest), in which case only the demo's own
/// file names are removed.
public struct DemoFolder {
    public static let recordName = ".espforge-demo-files"
    public static let fixedFiles = [
        "signing_key.pem", "bootloader.bin", "app.bin", "partition-table.bin", "partitions.csv", "sdkconfig",
        "nvs-config.csv", "nvs-values.csv", "espforge.toml",
        "registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm", "registry.sqlite-journal",
    ]
    public static let generatedManifestMarker = "espforge demo manifest (generated)"

    public let dir: String
    public var record: String { dir + "/" + Self.recordName }

    public init(dir: String) { self.dir = dir }

    /// Entries (relative paths) a demo with `devices` devices writes; device folders end in `/`.
    public static func entries(devices: Int) -> [String] {
        fixedFiles + (1...max(1, devices)).map { "devices/dev\($0)/" }
    }

    /// Makes the folder ready for a new demo: creates it, or clears an earlier demo's own entries.
    /// Returns how many entries of an earlier demo were removed.
    @discardableResult
    public func prepare(devices: Int) throws -> Int {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: dir, isDirectory: &isDir) {
            guard isDir.boolValue else { throw UsageError(Diagnostic("exists and is not a folder", file: dir, hint: "choose another --dir")) }
        }
        var removed = 0
        let contents = (try? fm.contentsOfDirectory(atPath: dir)) ?? []
        if !contents.isEmpty {
            let previous: [String]
            if let text = try? BoundedFile.readText(record, limit: .configText) {
                previous = text.split(separator: "\n").map(String.init)
            } else if let toml = try? BoundedFile.readText(dir + "/espforge.toml", limit: .configText),
                      toml.contains(Self.generatedManifestMarker) {
                // A demo from before the record: its fixed names and the device folders it made.
                let devs = ((try? fm.contentsOfDirectory(atPath: dir + "/devices")) ?? [])
                    .filter { $0.hasPrefix("dev") && fm.fileExists(atPath: dir + "/devices/" + $0 + "/device.json") }
                previous = Self.fixedFiles + devs.map { "devices/" + $0 + "/" }
            } else {
                throw UsageError(Diagnostic("exists and holds files an earlier demo did not write", file: dir,
                                            hint: "choose another --dir (demo only replaces its own files)"))
            }
            for entry in previous where Self.isOwnEntry(entry) {
                let path = dir + "/" + entry
                if fm.fileExists(atPath: path) {
                    try fm.removeItem(atPath: path)
                    removed += 1
                }
            }
            // The devices folder goes too when nothing else is in it.
            if ((try? fm.contentsOfDirectory(atPath: dir + "/devices")) ?? ["x"]).isEmpty {
                try? fm.removeItem(atPath: dir + "/devices")
            }
            try? fm.removeItem(atPath: record)
        }
        try fm.createDirectory(atPath: dir + "/devices", withIntermediateDirectories: true)
        // The record comes first: a demo killed at any later point is cleaned up by the next run.
        try AtomicFile.write(Array((Self.entries(devices: devices).joined(separator: "\n") + "\n").utf8), to: record)
        return removed
    }

    /// Only names a demo can have written: no absolute paths or `..` (the record is a file in a
    /// folder others may write to).
    public static func isOwnEntry(_ entry: String) -> Bool {
        if fixedFiles.contains(entry) { return true }
        let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0] == "devices" && parts[1].hasPrefix("dev")
            && parts[1].dropFirst(3).allSatisfy(\.isNumber) && parts[1].count > 3 && parts[2].isEmpty
    }
}
