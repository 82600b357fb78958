// The SSE client code shared by bench, watch and doctor lives in this target.
