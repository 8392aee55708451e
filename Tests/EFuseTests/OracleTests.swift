import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A virtual device folder in a private temporary directory, optionally served on a loopback port.
final class DeviceFolder {
    let root: URL
    let state: String
    private var server: DeviceServerProcess?
    private(set) var port = 0

    init(mac: String) throws {
        root = try TestEnvironment.temporaryDirectory("espforge-efuse")
        state = root.appendingPathComponent("dev").path
        let r = try Espforge.run(["device", "create", "--state", state, "--mac", mac])
        guard r.status == 0 else { throw TestSupportError.missing("device create failed: \(r.err)") }
    }

    var virtualPort: String { "virtual:" + state }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try Data(bytes).write(to: root.appendingPathComponent(name))
        return path(name)
    }

    /// `espforge device serve` on a free loopback port.
    func serve() throws {
        let s = try DeviceServerProcess(state: state)
        server = s
        port = s.port
    }

    func stop() {
        server?.stop()
        server = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: root)
    }

    func espefuse(_ args: [String]) throws -> ProcessResult {
        try Oracle.run("espefuse", ["--chip", "esp32", "--port", "socket://127.0.0.1:\(port)", "--before", "no-reset"] + args)
    }

    /// espefuse's `summary --format json` of the served device.
    func espefuseSummary() throws -> [String: [String: Any]] {
        let file = path("espefuse-summary-\(UUID().uuidString.prefix(6)).json")
        let r = try espefuse(["summary", "--format", "json", "--file", file])
        guard r.status == 0 else { throw TestSupportError.missing("espefuse summary failed: \(r.out.suffix(800)) \(r.err.suffix(800))") }
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file)))
        return (obj as? [String: [String: Any]]) ?? [:]
    }

    /// `espforge efuse summary --json` over virtual:DIR.
    func espforgeSummary() throws -> EFuseSummary {
        let r = try Espforge.run(["efuse", "summary", "--port", virtualPort, "--json"])
        guard r.status == 0 else { throw TestSupportError.missing("espforge efuse summary failed: \(r.err)") }
        return try JSONDecoder().decode(EFuseSummary.self, from: Data(r.stdout))
    }

    var efuseBin: [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: state + "/efuse.bin")))) ?? [] }
}

/// Every disagreement between espforge's decoded summary and espefuse's JSON, one line each.
func disagreements(_ mine: EFuseSummary, _ theirs: [String: [String: Any]]) -> [String] {
    var out: [String] = []
    var compared = 0
    for f in mine.fields {
        guard let e = theirs[f.name] else { continue }
        compared += 1
        if e["readable"] as? Bool != f.readable { out.append("\(f.name): readable \(f.readable) vs espefuse \(String(describing: e["readable"]))") }
        if e["writeable"] as? Bool != f.writeable { out.append("\(f.name): writeable \(f.writeable) vs espefuse \(String(describing: e["writeable"]))") }
        guard f.readable, let raw = e["raw_value"] as? String, raw.hasPrefix("0x") else { continue }
        let type = e["efuse_type"] as? String ?? ""
        if f.name == "MAC" {
            if (e["value"] as? String)?.hasPrefix(f.value) != true { out.append("MAC: \(f.value) vs espefuse \(String(describing: e["value"]))") }
        } else if type.hasPrefix("bytes") && f.name == "BLOCK1" && f.hex == nil {
            continue // a readable key is not shown by default
        } else if type.hasPrefix("bytes") {
            if String(raw.dropFirst(2)) != f.hex { out.append("\(f.name): \(f.hex ?? "-") vs espefuse \(raw)") }
        } else if UInt64(raw.dropFirst(2), radix: 16) != f.integer {
            out.append("\(f.name): \(f.integer.map { String($0) } ?? "-") vs espefuse \(raw)")
        }
    }
    if compared < 40 { out.append("only \(compared) fields in common with espefuse") }
    if let v = theirs["WAFER_VERSION_MAJOR"]?["value"] as? Int, v != mine.majorRevision { out.append("major revision \(mine.majorRevision) vs \(v)") }
    if let v = theirs["PKG_VERSION"]?["value"] as? Int, v != mine.package { out.append("package \(mine.package) vs \(v)") }
    return out
}

/// BLOCK0 fields both tools burn with plain values, with the largest value to try.
let burnableFields: [(String, UInt64)] = [
    ("JTAG_DISABLE", 1), ("DISABLE_DL_ENCRYPT", 1), ("DISABLE_DL_DECRYPT", 1), ("DISABLE_DL_CACHE", 1),
    ("CONSOLE_DEBUG_DISABLE", 1), ("DISABLE_SDIO_HOST", 1), ("DISABLE_BT", 1), ("FLASH_CRYPT_CONFIG", 15),
    ("SPI_PAD_CONFIG_CLK", 29), ("SPI_PAD_CONFIG_Q", 29), ("SPI_PAD_CONFIG_CS0", 29), ("SECURE_VERSION", 0xFFFF_FFFF),
]

func randomMAC(_ rng: inout SeededRandom) -> String {
    "24:0a:c4:" + (0..<3).map { _ in String(format: "%02x", Int.random(in: 0...255, using: &rng)) }.joined(separator: ":")
}

func pickFields(_ rng: inout SeededRandom, count: Int) -> [(String, UInt64)] {
    var pool = burnableFields
    var out: [(String, UInt64)] = []
    for _ in 0..<count where !pool.isEmpty {
        let (name, max) = pool.remove(at: Int.random(in: 0..<pool.count, using: &rng))
        out.append((name, UInt64.random(in: 1...max, using: &rng)))
    }
    return out
}

@Suite(.serialized) struct OracleTests {
    /// espforge burns over virtual:DIR; espefuse, over the served device, reports exactly that.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func espefuseSeesWhatEspforgeBurned() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try DeviceFolder(mac: randomMAC(&rng))
        let keyPEM = dev.path("sb.pem")
        let kg = try Espforge.run(["secure-boot", "keygen", "--scheme", "rsa3072", "-o", keyPEM])
        #expect(kg.status == 0, "\(kg.err)")
        let fek = rng.bytes(32)
        let fekPath = try dev.write(fek, "fe.key")
        let port = dev.virtualPort

        // Without --yes: the plan only, exit 2, no fuse changed; the key never appears.
        let before = dev.efuseBin
        let dry = try Espforge.run(["efuse", "burn-key", "--port", port, "flash_encryption", fekPath])
        #expect(dry.status == 2 && dev.efuseBin == before, "seed \(seed): \(dry.err)")
        #expect(!dry.out.contains(fek.hexString) && !dry.out.contains(Array(fek.reversed()).hexString))

        var r = try Espforge.run(["efuse", "burn-key-digest", "--port", port, "--key", keyPEM, "--yes"])
        #expect(r.status == 0, "seed \(seed): \(r.out) \(r.err)")
        r = try Espforge.run(["efuse", "burn-key", "--port", port, "flash_encryption", fekPath, "--yes"])
        #expect(r.status == 0, "seed \(seed): \(r.out) \(r.err)")
        #expect(!r.out.contains(fek.hexString) && !r.out.contains(Array(fek.reversed()).hexString))
        let fields = pickFields(&rng, count: 4)
        r = try Espforge.run(["efuse", "burn", "--port", port, "FLASH_CRYPT_CNT=1", "ABS_DONE_1=1", "--yes"]
                             + fields.map { "\($0.0)=\($0.1)" })
        #expect(r.status == 0, "seed \(seed): \(r.out) \(r.err)")
        let protectBlock3 = Bool.random(using: &rng)
        r = try Espforge.run(["efuse", "write-protect", "--port", port, "DISABLE_DL_CACHE", "XPD_SDIO_REG", "--yes"])
        #expect(r.status == 0, "seed \(seed): \(r.out) \(r.err)")
        if protectBlock3 {
            r = try Espforge.run(["efuse", "read-protect", "--port", port, "BLOCK3", "--yes"])
            #expect(r.status == 0, "seed \(seed): \(r.out) \(r.err)")
        }
        let mine = try dev.espforgeSummary()

        try dev.serve()
        defer { dev.stop() }
        let theirs = try dev.espefuseSummary()
        dev.stop()
        #expect(disagreements(mine, theirs) == [], "seed \(seed)")
        // Digest in BLOCK2 as espsecure computes it, write-protected, readable.
        let digestFile = dev.path("digest.bin")
        try Oracle.run("espsecure", ["digest-sbv2-public-key", "--keyfile", keyPEM, "-o", digestFile])
        let digest = [UInt8](try Data(contentsOf: URL(fileURLWithPath: digestFile)))
        #expect(theirs["BLOCK2"]?["raw_value"] as? String == "0x" + digest.hexString, "seed \(seed)")
        #expect(theirs["BLOCK2"]?["writeable"] as? Bool == false && theirs["BLOCK2"]?["readable"] as? Bool == true)
        // Key in BLOCK1: hidden from espefuse; the cells hold it byte-reversed.
        #expect(theirs["BLOCK1"]?["readable"] as? Bool == false && theirs["BLOCK1"]?["writeable"] as? Bool == false)
        #expect(Array(dev.efuseBin[28..<60]) == Array(fek.reversed()), "seed \(seed)")
        #expect(theirs["FLASH_CRYPT_CNT"]?["value"] as? Int == 1 && theirs["ABS_DONE_1"]?["value"] as? Bool == true)
        for (name, value) in fields where !(protectBlock3 && name == "SECURE_VERSION") {
            let raw = theirs[name]?["raw_value"] as? String
            #expect(raw.flatMap { UInt64($0.dropFirst(2), radix: 16) } == value, "seed \(seed): \(name)=\(value) vs \(raw ?? "-")")
        }
        #expect(theirs["DISABLE_DL_ENCRYPT"]?["writeable"] as? Bool == false, "WR_DIS bit 15 is shared")
        #expect(theirs["XPD_SDIO_TIEH"]?["writeable"] as? Bool == false, "WR_DIS bit 5 is shared")
        #expect(theirs["BLOCK3"]?["readable"] as? Bool == !protectBlock3)
    }

    /// espefuse burns over the socket; espforge's summary of the folder agrees on every field.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func espforgeSeesWhatEspefuseBurned() throws {
        let seed = testSeed() &+ 1
        var rng = SeededRandom(seed: seed)
        let dev = try DeviceFolder(mac: randomMAC(&rng))
        let keyPEM = dev.path("sb.pem")
        try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", "rsa3072", keyPEM])
        let fekPath = try dev.write(rng.bytes(32), "fe.key")
        try dev.serve()
        defer { dev.stop() }
        func ok(_ args: [String]) throws {
            let r = try dev.espefuse(["--do-not-confirm"] + args)
            #expect(r.status == 0, "seed \(seed): espefuse \(args): \(r.out.suffix(600)) \(r.err.suffix(600))")
        }
        let fields = pickFields(&rng, count: 4)
        try ok(["burn-efuse"] + fields.flatMap { [$0.0, String($0.1)] })
        try ok(["burn-key-digest", keyPEM])
        try ok(["burn-key", "flash_encryption", fekPath])
        try ok(["burn-efuse", "FLASH_CRYPT_CNT", "1"])
        try ok(["burn-custom-mac", "02:" + (0..<5).map { _ in String(format: "%02x", Int.random(in: 0...255, using: &rng)) }.joined(separator: ":")])
        try ok(["write-protect-efuse", "DISABLE_DL_ENCRYPT", "MAC"])
        if Bool.random(using: &rng) { try ok(["read-protect-efuse", "FLASH_CRYPT_CONFIG"]) }
        let theirs = try dev.espefuseSummary()
        dev.stop()
        let mine = try dev.espforgeSummary()
        #expect(disagreements(mine, theirs) == [], "seed \(seed)")
        #expect(mine.security.flashEncryptionEnabled && mine.security.blk1ReadProtected && mine.security.secureBootDigestBurned)
        #expect(mine.field("CUSTOM_MAC")?.value == (theirs["CUSTOM_MAC"]?["value"] as? String)?.split(separator: " ").first.map(String.init))
    }
}
