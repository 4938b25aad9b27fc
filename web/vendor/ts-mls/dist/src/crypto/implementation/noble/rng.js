export * from "../default/rng.js";
//# sourceMappingURL=rng.js.map