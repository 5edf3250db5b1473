"""Distribution analysis: many samples per prompt, their rewards and representations, PCA / t-SNE.

`inputs` writes the inputs (single-prompt files, sample representations, the RM's reward direction w);
`analysis` holds the maths (PCA, prompt-removal modes, projections on w, a Gaussianity test of
chosen − rejected differences); `visualize` holds the figure steps, each writing a PNG and the
numbers behind it as JSON.
"""
