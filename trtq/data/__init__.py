"""Streamed data readers: image folders, .npy/.npz, video, random; batching and the eval split."""
