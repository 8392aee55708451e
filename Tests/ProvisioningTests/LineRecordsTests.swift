import BootSimulator
import EFuse
import NVS
import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// What a board holds (flash and eFuses), to prove nothing was written.
func snapshot(_ t: VirtualTarget) throws -> ([UInt8], EFuseArray) {
    let d = try t.load()
    return (d.flash.read(0, d.flash.size) ?? [], d.efuses)
}

@Suite("Boards plugged in again; secured boards the registry does not know")
struct ReplugTests {
    @Test("provisioned boards plugged in again (without --resume): reported already provisioned, left alone, record untouched",
          fixtures, arguments: Backend.enabled)
    func replugLeavesProvisionedBoardsAlone(backend: Backend) async throws {
        let line = try Line(count: 2, mode: .host)
        defer { line.cleanup() }
        let registry = try await backend.open(line.dir)
        let first = try await line.provision(registry)
        #expect(first.allSatisfy { $0.ok && $0.state == .provisioned }, "\(first.map { "\($0.failedStep ?? "") \($0.reason ?? "")" })")
        var before: [String: (DeviceRecord?, Int, ([UInt8], EFuseArray))] = [:]
        for t in line.targets {
            let mac = try t.load().description.mac
            before[mac] = (try await registry.device(mac: mac), try await registry.steps(mac: mac).count, try snapshot(t))
        }
        let pool = try await registry.poolStatus(pool: line.job.identityPool)

        let again = try await line.provision(registry)   // no resume
        for (r, was) in zip(again, first) {
            #expect(r.ok && r.state == .skipped && r.failedStep == nil, "\(r.port): \(r.failedStep ?? "") \(r.reason ?? "")")
            #expect(r.identity == was.identity && r.identity != nil)
        }
        for t in line.targets {
            let mac = try t.load().description.mac
            let (record, steps, state) = try #require(before[mac])
            #expect(try await registry.device(mac: mac) == record, "record untouched")
            #expect(try await registry.device(mac: mac)?.status == .provisioned)
            #expect(try await registry.steps(mac: mac).count == steps, "no step recorded on the device")
            let now = try snapshot(t)
            #expect(now.0 == state.0 && now.1 == state.1, "nothing written, no eFuse burned")
            #expect(try await registry.events(mac: mac).map(\.kind) == ["already-provisioned"])
        }
        let poolAfter = try await registry.poolStatus(pool: line.job.identityPool)
        #expect(poolAfter.total == pool.total && poolAfter.claimed == pool.claimed, "no claim")
        try await registry.close()
    }

    @Test("a secured board the registry does not know, or knows under another manifest, is refused before anything; an event records it",
          fixtures, arguments: Backend.enabled)
    func securedBoardsRefused(backend: Backend) async throws {
        let line = try Line(count: 1, mode: .onChip)
        defer { line.cleanup() }
        let home = try await Backend.sqlite.open(line.dir)
        #expect(try await line.provision(home).allSatisfy(\.ok))
        let t = line.targets[0]
        let mac = try t.load().description.mac
        let record = try await home.device(mac: mac)
        let state = try snapshot(t)

        // Another registry (another line): unknown there.
        let otherDir = try TestEnvironment.temporaryDirectory("espforge-other")
        defer { try? FileManager.default.removeItem(at: otherDir) }
        let other = try await backend.open(otherDir)
        let r = try #require(try await line.provision(other).first)
        #expect(!r.ok && r.state == .failed && r.failedStep == "identify", "\(r.failedStep ?? "")")
        #expect(r.reason?.contains("already secured") == true && r.reason?.contains("does not know") == true, "\(r.reason ?? "")")
        #expect(try await other.device(mac: mac) == nil, "no record created")
        #expect(try await other.events(mac: mac).map(\.kind) == ["refused"])
        #expect(try await other.steps(mac: mac).isEmpty)
        try await other.close()

        // The home registry, but a line running another manifest: refused, record untouched.
        var job = line.job
        job.manifestHash = String(repeating: "cd", count: 32)
        let m = try #require(try await line.provision(home, job: job).first)
        #expect(!m.ok && m.failedStep == "identify" && m.reason?.contains("manifest") == true, "\(m.reason ?? "")")
        #expect(try await home.device(mac: mac) == record)
        #expect(try await home.events(mac: mac).last?.kind == "refused")
        let now = try snapshot(t)
        #expect(now.0 == state.0 && now.1 == state.1)

        // RMA: the operator's mark; the board is refused from then on, the record stays rma.
        try await home.markRMA(mac: mac, reason: "returned", station: "repair")
        let rma = try #require(try await line.provision(home).first)
        #expect(!rma.ok && rma.reason?.contains("RMA") == true, "\(rma.reason ?? "")")
        #expect(try await home.device(mac: mac)?.status == .rma)
        try await home.close()
    }
}

@Suite("espforge provision: re-plugged boards, pool loading, manifests without [nvs] (CLI)")
struct ProvisionLineCLITests {
    @Test("provision again on finished boards: exit 0, `already provisioned as`, state skipped in --json, registry unchanged; the values CSV's new rows are counted")
    func replugThroughTheCLI() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-replug")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        let demo = try Espforge.run(["demo", "--devices", "2", "--dir", out])
        #expect(demo.status == 0, "\(demo.err)")
        #expect(demo.out.contains("pool nvs-values.csv: 2 identities added"), "\(demo.out)")
        let ports = (1...2).flatMap { ["--port", "virtual:\(out)/devices/dev\($0)"] }
        let listBefore = try Espforge.run(["registry", "export", "--csv", "--registry", out + "/registry.sqlite"])

        let plain = try Espforge.run(["provision", "--manifest", out + "/espforge.toml"] + ports)
        #expect(plain.status == 0, "\(plain.out)\n\(plain.err)")
        #expect(plain.out.components(separatedBy: "already provisioned as SN00100").count - 1 >= 2, "\(plain.out)")
        #expect(plain.out.contains("2 passed: 0 provisioned, 2 already provisioned"), "\(plain.out)")
        #expect(plain.out.contains("0 identities added"), "\(plain.out)")

        // A new first row in the values CSV: counted, and the rows the CLI loader reads match the pipeline's.
        let csv = out + "/nvs-values.csv"
        let text = try String(contentsOfFile: csv, encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        lines.insert("SN000999,SN000999,3", at: 1)
        try (lines.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        let json = try Espforge.run(["provision", "--manifest", out + "/espforge.toml", "--json"] + ports)
        #expect(json.status == 0, "\(json.out)\n\(json.err)")
        var states: [String] = []
        var added: Int?
        for l in json.out.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], "\(l)")
            if let s = obj["summary"] as? [String: Any] { states.append(s["state"] as? String ?? "?") }
            if obj["pool"] != nil { added = obj["added"] as? Int }
        }
        #expect(states == ["skipped", "skipped"], "\(json.out)")
        #expect(added == 1, "\(json.out)")
        let cli = try Espforge.run(["registry", "pool", "nvs-values.csv", "--load", csv, "--registry", out + "/registry.sqlite"])
        #expect(cli.status == 0 && cli.out.contains("0 identities added") && cli.out.contains("3 identities, 2 claimed"), "\(cli.out)\(cli.err)")
        let listAfter = try Espforge.run(["registry", "export", "--csv", "--registry", out + "/registry.sqlite"])
        #expect(listAfter.out == listBefore.out, "records untouched")
    }

    @Test("espforge init --build-dir (no [nvs]), then provision two boards: no claim (recorded skipped), identity = MAC", fixtures)
    func initWithoutNVSProvisions() async throws {
        let p = try FakeIDFProject(signedBinaries: true, devices: 2)
        defer { p.remove() }
        let made = try Espforge.run(["init", "--build-dir", p.build.path, "-o", p.manifest])
        #expect(made.status == 0, "\(made.err)")
        let text = try String(contentsOfFile: p.manifest, encoding: .utf8)
        #expect(!text.contains("[nvs]"))
        let r = try Espforge.run(["provision", "--manifest", p.manifest, "--registry", p.registry,
                                  "--port", "virtual:" + p.devices[0], "--port", "virtual:" + p.devices[1]])
        #expect(r.status == 0, "\(text)\n\(r.out)\n\(r.err)")
        #expect(r.out.contains("claim: skipped"), "\(r.out)")
        let registry = try await openRegistry(url: p.registry)
        for i in 0..<2 {
            let mac = try DeviceStore(directory: p.devices[i]).load().description.mac
            #expect(r.out.contains("  \(mac)  \(mac)  ok"), "the identity is the MAC: \(r.out)")
            let record = try #require(try await registry.device(mac: mac))
            #expect(record.status == .provisioned && record.identity == mac && record.identityPool == nil)
            let steps = try await registry.steps(mac: mac)
            #expect(steps.first { $0.step == "claim" }?.outcome == .skipped)
            #expect(steps.first { $0.step == "build-nvs" }?.outcome == .skipped)
            #expect(steps.filter { $0.outcome == .ok }.map(\.step) == ["identify", "preflight", "write", "first-boot", "verify", "final-efuses", "record"])
            #expect(try p.block2(i) == p.keyDigest)
        }
        try await registry.close()
    }
}

@Suite("Identity pool rows: one reader")
struct IdentityPoolFileTests {
    @Test("the values CSV and the devices expanded from it give the same ids, order, sources and digests")
    func bothPathsAgree() throws {
        let config = "key,type,encoding,value\ndevice,namespace,,\nserial_no,data,string,\nwifi,data,string,dflt\nmodel,data,string,test\n"
        let values = "id,serial_no,wifi\nA1,S1,pw1\nA2,S2,\nA3,S3,pw3\n"
        let fromFile = try IdentityPoolFile.rows(valuesCSV: values, file: "/line/values.csv")
        let devices = try NVSPerDevice.devices(config: try NVSPerDevice.config(config), values: values).devices
        let fromDevices = IdentityPoolFile.rows(devices: devices, source: "values.csv")
        #expect(fromFile == fromDevices)
        #expect(fromFile.map(\.id) == ["A1", "A2", "A3"] && fromFile.map(\.ordinal) == [2, 3, 4])
        #expect(fromFile[1].source == "values.csv line 3")
        // A changed value changes the digest; the values themselves are nowhere in the rows.
        let changed = try IdentityPoolFile.rows(valuesCSV: "id,serial_no,wifi\nA1,S1,pw9\n", file: "values.csv")
        #expect(changed[0].digest != fromFile[0].digest && changed[0].id == "A1")
        let dump = String(decoding: try JSONEncoder().encode(fromFile), as: UTF8.self)
        #expect(!dump.contains("pw1") && !dump.contains("S1"))
        #expect(throws: IdentityPoolError.self) { try IdentityPoolFile.rows(valuesCSV: "id,x\nA,1\nA,2\n", file: "v.csv") }
        #expect(throws: IdentityPoolError.self) { try IdentityPoolFile.rows(valuesCSV: "id,x\n,1\n", file: "v.csv") }
    }
}
