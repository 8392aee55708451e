import ESPCore
import Foundation
@testable import NVS
import Testing
import TestSupport

@Suite(.serialized) struct NVSCLITests {
    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? Int) ?? -1
    }

    @Test func badCSVLineExitsOneWithLineNumber() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("bad.csv")
        try Data("key,type,encoding,value\nns,namespace,,\nok,data,u8,1\nbad,data,i8,200\n".utf8).write(to: csv)
        let out = dir.appendingPathComponent("out.bin").path
        let r = try Espforge.run(["nvs", "generate", csv.path, "--size", "0x3000", "-o", out])
        #expect(r.status == 1)
        #expect(r.err.contains("line 4"), "\(r.err)")
        #expect(r.err.contains("bad.csv"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let r2 = try Espforge.run(["nvs", "generate", csv.path, "--size", "0x3100", "-o", out])
        #expect(r2.status == 1)
        #expect(r2.err.contains("4096"), "\(r2.err)")
    }

    @Test func keygenGenerateShowRoundTrip() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("blob".utf8).write(to: dir.appendingPathComponent("payload.txt"))
        let csv = dir.appendingPathComponent("nvs.csv")
        try Data("key,type,encoding,value\nstorage,namespace,,\nserial,data,string,SN42\nraw,file,binary,payload.txt\n".utf8).write(to: csv)
        let keys = dir.appendingPathComponent("keys.bin").path
        let k = try Espforge.run(["nvs", "keygen", "-o", keys])
        #expect(k.status == 0, "\(k.err)")
        #expect(Self.mode(keys) == 0o600)
        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: keys)))
        let parsed = try NVSKeys(file: image)
        #expect(!k.out.contains(Array(parsed.bytes.prefix(8)).hexString) && !k.err.contains(Array(parsed.bytes.prefix(8)).hexString))
        // keygen refuses to overwrite.
        #expect(try Espforge.run(["nvs", "keygen", "-o", keys]).status == 1)

        let out = dir.appendingPathComponent("nvs.bin").path
        let g = try Espforge.run(["nvs", "generate", csv.path, "--size", "0x3000", "-o", out, "--encrypt", "--keys", keys])
        #expect(g.status == 0, "\(g.err)")
        let s = try Espforge.run(["nvs", "show", out, "--keys", keys, "--json"])
        #expect(s.status == 0, "\(s.err)")
        let report = try JSONDecoder().decode(NVSReport.self, from: Data(s.stdout))
        #expect(report.entries.first { $0.key == "serial" }?.value == "SN42")
        #expect(report.entries.first { $0.key == "raw" && $0.type == "blob_index" }?.value == Array("blob".utf8).hexString)
        #expect(report.problems.isEmpty)
        // Without keys: reported, not failed.
        let plain = try Espforge.run(["nvs", "show", out])
        #expect(plain.status == 0)
        #expect(plain.out.contains("problems"))

        // --version 1 reaches the generator (not ArgumentParser's own --version flag).
        let v1 = dir.appendingPathComponent("v1.bin").path
        let g1 = try Espforge.run(["nvs", "generate", csv.path, "--size", "0x3000", "-o", v1, "--version", "1"])
        #expect(g1.status == 0, "\(g1.err)")
        #expect(FileManager.default.contents(atPath: v1).map { [UInt8]($0)[8] } == 0xFF)

        // --keygen writes a fresh key file, mode 0600.
        let keys2 = dir.appendingPathComponent("keys2.bin").path
        let g2 = try Espforge.run(["nvs", "generate", csv.path, "--size", "0x3000", "-o", out, "--encrypt", "--keygen", keys2])
        #expect(g2.status == 0, "\(g2.err)")
        #expect(Self.mode(keys2) == 0o600)
        let s2 = try Espforge.run(["nvs", "show", out, "--keys", keys2])
        #expect(s2.out.contains("SN42"), "\(s2.out)")
        #expect(!s2.out.contains("problems"))
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func keygenImageIsAcceptedByTheOracle() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = dir.appendingPathComponent("keys.bin").path
        #expect(try Espforge.run(["nvs", "keygen", "-o", keys]).status == 0)
        let csvText = "key,type,encoding,value\nstorage,namespace,,\nserial,data,string,SN42\nn,data,u32,7\n"
        let csv = dir.appendingPathComponent("nvs.csv")
        try Data(csvText.utf8).write(to: csv)
        let ours = dir.appendingPathComponent("ours.bin").path
        let theirs = dir.appendingPathComponent("theirs.bin").path
        #expect(try Espforge.run(["nvs", "generate", csv.path, "--size", "0x4000", "-o", ours, "--encrypt", "--keys", keys]).status == 0)
        let r = try Oracle.run("python", ["-m", "esp_idf_nvs_partition_gen", "encrypt", csv.path, theirs, "0x4000", "--inputkey", keys])
        #expect(r.status == 0, "\(r.err)")
        #expect(FileManager.default.contents(atPath: ours) == FileManager.default.contents(atPath: theirs))
        // The oracle's own key files are accepted by espforge.
        let okeys = dir.appendingPathComponent("okeys").path
        let kr = try Oracle.run("python", ["-m", "esp_idf_nvs_partition_gen", "generate-key", "--keyfile", "k.bin", "--outdir", okeys])
        #expect(kr.status == 0, "\(kr.err)")
        let okeyFile = okeys + "/keys/k.bin"
        #expect(try Espforge.run(["nvs", "show", ours, "--keys", okeyFile]).status == 0)
        #expect((try? NVSKeys(file: [UInt8](FileManager.default.contents(atPath: okeyFile) ?? Data()))) != nil)
    }

    /// Per-device mode: each image equals the oracle's output for the device's own CSV; bad rows
    /// are reported with row and column and leave no files.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func perDeviceImagesMatchTheOracle() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("nvs-mfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("ca.pem")
        try Data("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8).write(to: cert)
        let config = """
            key,type,encoding,value
            factory,namespace,
            serial,data,string
            mac,data,hex2bin
            calib,data,i32
            hwrev,data,u8,3
            ca,file,string,ca.pem
            wifi,namespace,
            psk,data,base64

            """
        try Data(config.utf8).write(to: dir.appendingPathComponent("config.csv"))
        var lines = ["id,serial,mac,calib,psk"]
        var good: [(id: String, serial: String, mac: String, calib: Int32, psk: String)] = []
        for i in 0..<6 {
            let id = "SN\(1000 + i)"
            let mac = rng.bytes(6).hexString
            let calib = Int32.random(in: Int32.min...Int32.max, using: &rng)
            let psk = Data(rng.bytes(Int.random(in: 8...40, using: &rng))).base64EncodedString()
            lines.append("\(id),\(id)-S,\(mac),\(calib),\(psk)")
            good.append((id, "\(id)-S", mac, calib, psk))
        }
        lines.append("BAD1,x,zz11,5,AAAA")                // line 8: bad hex, column 8
        lines.append("BAD2,y,001122,notanumber,AAAA")    // line 9: bad i32, column 15
        lines.append("BAD3,z,001122")                    // line 10: missing calib
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("values.csv"))
        let outdir = dir.appendingPathComponent("out").path
        for encrypt in [false, true] {
            var args = ["nvs", "generate", dir.appendingPathComponent("config.csv").path,
                        "--values", dir.appendingPathComponent("values.csv").path, "--size", "0x4000", "--outdir", outdir]
            if encrypt { args.append("--encrypt") }
            let r = try Espforge.run(args)
            #expect(r.status == 1, "\(r.err)")
            #expect(r.err.contains("line 8, column 8"), "\(r.err)")
            #expect(r.err.contains("line 9, column 15"), "\(r.err)")
            #expect(r.err.contains("line 10"), "\(r.err)")
            for bad in ["BAD1", "BAD2", "BAD3"] {
                #expect(!FileManager.default.fileExists(atPath: outdir + "/\(bad).bin"))
                #expect(!FileManager.default.fileExists(atPath: outdir + "/\(bad)-keys.bin"))
            }
            for d in good {
                let csv = """
                    key,type,encoding,value
                    factory,namespace,,
                    serial,data,string,\(d.serial)
                    mac,data,hex2bin,\(d.mac)
                    calib,data,i32,\(d.calib)
                    hwrev,data,u8,3
                    ca,file,string,\(cert.path)
                    wifi,namespace,,
                    psk,data,base64,\(d.psk)

                    """
                let ours = [UInt8](FileManager.default.contents(atPath: outdir + "/\(d.id).bin") ?? Data())
                var key: [UInt8]?
                if encrypt {
                    let keyPath = outdir + "/\(d.id)-keys.bin"
                    #expect(Self.mode(keyPath) == 0o600)
                    key = try NVSKeys(file: [UInt8](FileManager.default.contents(atPath: keyPath) ?? Data())).bytes
                }
                let theirs = try NVSOracle.generate(csv: csv, size: 0x4000, version: 2, key: key, in: dir)
                #expect(theirs != nil && ours == theirs, "\(d.id) encrypt=\(encrypt): \(firstDifference(ours, theirs ?? [])); seed \(seed)")
            }
            if encrypt {
                let k0 = FileManager.default.contents(atPath: outdir + "/\(good[0].id)-keys.bin")
                let k1 = FileManager.default.contents(atPath: outdir + "/\(good[1].id)-keys.bin")
                #expect(k0 != nil && k0 != k1, "each device has its own key")
            }
            try? FileManager.default.removeItem(atPath: outdir)
        }
    }
}
