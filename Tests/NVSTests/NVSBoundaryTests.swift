import ESPCore
import Foundation
@testable import NVS
import Testing
import TestSupport

/// Page-boundary sweep: many small CSVs whose last value lands at every interesting position of a
/// page. To keep this fast, one Python process runs the generator's own `generate`/`encrypt`
/// functions (the code behind `python -m esp_idf_nvs_partition_gen generate|encrypt`) for all jobs.
@Suite(.serialized) struct NVSBoundaryTests {
    struct Job: Codable {
        var csv: String
        var out: String
        var size: String
        var version: Int
        var key: String?
    }

    static let driver = """
        import json, os, sys
        from types import SimpleNamespace
        from esp_idf_nvs_partition_gen import nvs_partition_gen as g
        jobs = json.load(open(sys.argv[1]))
        results = []
        for j in jobs:
            try:
                a = SimpleNamespace(input=[j["csv"]], output=j["out"], size=j["size"], version=j["version"],
                                    outdir=os.path.dirname(j["out"]))
                if j.get("key"):
                    a.keygen = False; a.inputkey = j["key"]; a.keyfile = None; a.key_protect_hmac = False
                    a.kp_hmac_keygen = False; a.kp_hmac_keyfile = None; a.kp_hmac_inputkey = None
                    g.encrypt(a)
                else:
                    g.generate(a)
                results.append("ok")
            except BaseException as e:
                results.append("error: " + type(e).__name__)
                if os.path.exists(j["out"]):
                    os.remove(j["out"])
        json.dump(results, open(sys.argv[2], "w"))
        """

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func pageBoundarySweepMatchesTheOracle() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-sweep")
        defer { try? FileManager.default.removeItem(at: dir) }
        var jobs: [Job] = []
        var texts: [String] = []
        var keys: [[UInt8]?] = []
        let keyBytes = Array(UInt8(100)..<UInt8(164))
        let keyURL = dir.appendingPathComponent("k.bin")
        try Data(try NVSKeys(raw: keyBytes).image).write(to: keyURL)
        var n = 0
        // Filler primitives put the next value at entry `fill + 1` (after the namespace entry).
        for fill in [0, 60, 110, 118, 121, 122, 123, 124, 125, 126] {
            for (encoding, sizes) in [("string", [0, 31, 32, 33, 1983, 3966, 3967, 3968]),
                                      ("hex2bin", [0, 1, 31, 32, 33, 64, 97, 1984, 1985, 3968, 4000, 4001, 8100, 12000])] {
                for size in sizes {
                    for version in [1, 2] {
                        var lines = ["key,type,encoding,value", "ns,namespace,,"]
                        for i in 0..<fill { lines.append("f\(i),data,u\([8, 16, 32, 64][i % 4]),\(i)") }
                        let value = encoding == "string" ? String(repeating: "s", count: size)
                            : String(repeating: "5a", count: size)
                        lines.append("v,data,\(encoding),\(value)")
                        lines.append("after,data,u8,7")
                        let text = lines.joined(separator: "\n") + "\n"
                        let csvURL = dir.appendingPathComponent("c\(n).csv")
                        try Data(text.utf8).write(to: csvURL)
                        let encrypt = n % 5 == 0
                        jobs.append(Job(csv: csvURL.path, out: dir.appendingPathComponent("o\(n).bin").path,
                                        size: "0x8000", version: version, key: encrypt ? keyURL.path : nil))
                        texts.append(text)
                        keys.append(encrypt ? keyBytes : nil)
                        n += 1
                    }
                }
            }
        }
        let jobsURL = dir.appendingPathComponent("jobs.json"), resultsURL = dir.appendingPathComponent("results.json")
        let driverURL = dir.appendingPathComponent("driver.py")
        try JSONEncoder().encode(jobs).write(to: jobsURL)
        try Data(Self.driver.utf8).write(to: driverURL)
        let r = try Oracle.run("python", [driverURL.path, jobsURL.path, resultsURL.path])
        #expect(r.status == 0, "\(r.err.suffix(500))")
        let results = try JSONDecoder().decode([String].self, from: Data(contentsOf: resultsURL))
        #expect(results.count == jobs.count)
        var agreedFailures = 0, compared = 0
        for (i, job) in jobs.enumerated() where i < results.count {
            let ours = Result { try NVSGenerator.generate(csv: texts[i], options: NVSImageOptions(size: 0x8000, version: job.version, key: keys[i])) }
            switch (ours, results[i] == "ok") {
            case let (.success(image), true):
                let theirs = [UInt8](FileManager.default.contents(atPath: job.out) ?? Data())
                compared += 1
                #expect(image.bytes == theirs, "job \(i) (v\(job.version)) \(texts[i].suffix(60).prefix(30)): \(firstDifference(image.bytes, theirs))")
            case (.failure, false):
                agreedFailures += 1
            case let (.success, false):
                Issue.record("job \(i): oracle failed (\(results[i])) but espforge accepted: \(texts[i].suffix(80))")
            case let (.failure(e), true):
                Issue.record("job \(i): espforge rejected (\(e)) but the oracle accepted")
            }
        }
        // Strings over 3967 characters and v1 blobs over 1984 bytes fail in both tools.
        #expect(agreedFailures > 0)
        #expect(compared + agreedFailures == jobs.count)
        #expect(compared > 300, "only \(compared) images compared")
        print("page-boundary sweep: \(compared) images identical, \(agreedFailures) inputs rejected by both")
    }
}
