import BootSimulator
import ESPCore
import Foundation
import Provisioning
import Registry

/// The production line as one call: a manifest read into a job (``load(manifestPath:tokenSigner:escrowKey:)``),
/// then ports provisioned in parallel against a registry (``provision(_:ports:options:)``). Used by
/// `espforge provision`, `espforge demo` and the station; nothing here prints.
public enum ProvisionSetup {
    /// A manifest and its files, ready to provision.
    public struct Loaded: Sendable {
        public var job: ProvisioningJob
        /// The bootloader's options (the build's sdkconfig, or the manifest's security settings).
        public var sdkconfig: SDKConfig
        /// The manifest's [registry] url, resolved against the manifest's folder.
        public var registryURL: String?
        /// The manifest's [station] slots (name, port), in order.
        public var stationSlots: [(name: String, port: String)] = []
        public init(job: ProvisioningJob, sdkconfig: SDKConfig, registryURL: String?) {
            self.job = job; self.sdkconfig = sdkconfig; self.registryURL = registryURL
        }
    }

    /// The identity pool after it was loaded from the values CSV.
    public struct PoolLoaded: Codable, Sendable {
        public var pool: String
        public var added: Int
        public var total: Int
        public var claimed: Int
    }

    /// How one batch runs.
    public struct RunOptions: Sendable {
        public var registryURL: String?
        public var resume = false
        public var link = LoaderLinkOptions()
        /// Virtual devices: sleep each device's virtual time once it finished (demos).
        public var realtime = false
        public var rngSeed: UInt64?
        public var onEvent: (@Sendable (ProvisionEvent) -> Void)?
        /// Called once the identity pool is loaded (only when the job claims identities).
        public var onPoolLoaded: (@Sendable (PoolLoaded) -> Void)?
        /// Called after a step finished ok (test hooks).
        public var afterStep: (@Sendable (ProvisionStep, String) -> Void)?
        public init(registryURL: String? = nil) { self.registryURL = registryURL }
    }

    /// Provisions every port in parallel (each on its own thread) and returns the results in port
    /// order. The registry is opened from `options.registryURL` (else the manifest's, else
    /// espforge-registry.sqlite) and closed at the end.
    public static func provision(_ loaded: Loaded, ports: [String], options: RunOptions) async throws -> [ProvisionResult] {
        let registry = try await openRegistry(url: options.registryURL ?? loaded.registryURL)
        do {
            let provisioner = try await prepare(loaded, registry: registry, options: options)
            let targets = ports.map { ProvisioningTargets.target(for: $0, link: linkOptions(options.link)) }
            let realtime = options.realtime
            let results = await provisioner.provision(all: targets) { result in
                if realtime { try? await Task.sleep(nanoseconds: UInt64(max(0, result.virtualMilliseconds)) * 1_000_000) }
            }
            try? await registry.close()
            return results
        } catch {
            try? await registry.close()
            throw error
        }
    }

    /// A provisioner for `loaded` on `registry` with the identity pool loaded (station and batch).
    public static func prepare(_ loaded: Loaded, registry: any DeviceRegistry, options: RunOptions) async throws -> Provisioner {
        var provisioner = Provisioner(job: loaded.job, registry: registry, sdkconfig: loaded.sdkconfig, resume: options.resume)
        provisioner.rngSeed = options.rngSeed
        provisioner.onEvent = options.onEvent
        provisioner.afterStep = options.afterStep
        let added = try await provisioner.loadPool()
        if loaded.job.claimsIdentities {
            let pool = loaded.job.identityPool
            let status = try await registry.poolStatus(pool: pool)
            options.onPoolLoaded?(PoolLoaded(pool: pool, added: added, total: status.total, claimed: status.claimed))
        }
        return provisioner
    }

    /// Link options with the board port opener filled in when none is set.
    public static func linkOptions(_ link: LoaderLinkOptions) -> LoaderLinkOptions {
        var link = link
        if link.session.ports.virtual == nil { link.session.ports = BoardPorts.opener }
        return link
    }

    /// `N passed: …, K failed` (skipped boards count as passes).
    public static func counts(_ results: [ProvisionResult]) -> String {
        let done = results.filter { $0.ok && $0.state != .skipped }.count
        let skipped = results.filter { $0.state == .skipped }.count
        return "\(done + skipped) passed: \(done) provisioned, \(skipped) already provisioned (left alone); \(results.count - done - skipped) failed"
    }
}
